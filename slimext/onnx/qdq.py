"""quantize_linear / dequantize_linear -> ONNX QuantizeLinear / DequantizeLinear.

Paddle's scale is the clipping threshold: q = round(x / scale * 127), x = q * scale / 127.
ONNX's is the step: q = round(x / step), so step = scale / 127 (8 bits). Every use of one
Paddle scale variable reads one ONNX initializer (its name + '@step'), so a shared scale
(a concat group, a shared join quantizer) stays one tensor that every Q/DQ of the group
reads. Weights: per-channel on Paddle's quant_axis (0 for conv filters), stored as int8
initializers (the export already keeps them int8; a float weight is rounded here).
"""
import numpy as np

from slimext.onnx.op_converters import converts

ONNX_BITS = 8


def _max_range(bits):
    return float((1 << (bits - 1)) - 1)


def _check_bits(g, op):
    bits = int(op.attrs.get("bit_length", 8))
    if bits != ONNX_BITS:
        g.unsupported(op, "{}-bit quantization (ONNX Q/DQ here is 8-bit; the export keeps "
                      "other widths float on INT8 backends)".format(bits))
    return bits


def _step(g, op, bits):
    """The ONNX scale initializer of the op's Paddle scale (per-tensor: a scalar).

    A weight with a quant_axis stays per-channel even with one channel (a 1-output conv),
    so that every conv filter reads the same per-channel form."""
    name = op.input("Scale")
    threshold = g.param(name)
    if threshold is None:
        g.unsupported(op, "its scale {} is computed at run time".format(name))
    threshold = np.asarray(threshold, np.float32)
    if np.any(threshold <= 0) or not np.all(np.isfinite(threshold)):
        g.unsupported(op, "scale {} holds a non-positive or non-finite value".format(name))
    per_channel = _axis(op) is not None and \
        (threshold.size > 1 or g.param(op.input("X")) is not None)
    step = threshold / np.float32(_max_range(bits))
    return g.initializer(name + "@step", step if per_channel else step.reshape(())), \
        per_channel, step


def _axis(op):
    axis = op.attrs.get("quant_axis", -1)
    return None if axis is None or axis < 0 else int(axis)


def _zero_point(g, step_name, step):
    return g.initializer(step_name + "@zero", np.zeros(np.shape(step), np.int8))


@converts("quantize_linear")
def quantize_linear(g, op):
    bits = _check_bits(g, op)
    if op.attrs.get("only_observer"):
        g.node("Identity", [g.value(op.input("X"))], op.output("Y"))
        return
    step_name, per_channel, step = _step(g, op, bits)
    if g.param(op.input("X")) is not None:
        # A quantized constant: store its int8 values instead of a Q node on a float copy.
        g.initializer(op.output("Y"), _quantize(g.param(op.input("X")), step, _axis(op)))
        return
    attrs = {"axis": _axis(op)} if per_channel else {}
    g.node("QuantizeLinear", [g.value(op.input("X")), step_name,
                              _zero_point(g, step_name, step if per_channel else 0.0)],
           op.output("Y"), **attrs)


@converts("dequantize_linear")
def dequantize_linear(g, op):
    bits = _check_bits(g, op)
    if op.attrs.get("only_observer"):
        g.node("Identity", [g.value(op.input("X"))], op.output("Y"))
        return
    step_name, per_channel, step = _step(g, op, bits)
    source = op.input("X")
    weight = g.param(source)
    if weight is not None:
        # A weight: int8 in the export already, or float that is rounded here.
        stored = weight if weight.dtype == np.int8 else _quantize(weight, step, _axis(op))
        source = g.initializer(source, stored.astype(np.int8))
    else:
        source = g.value(source)   # the latest write of the quantized variable
    attrs = {"axis": _axis(op)} if per_channel else {}
    g.node("DequantizeLinear", [source, step_name,
                                _zero_point(g, step_name, step if per_channel else 0.0)],
           op.output("Y"), **attrs)


def _quantize(values, step, axis):
    step = np.asarray(step, np.float32)
    if step.size > 1:
        shape = [1] * values.ndim
        shape[axis] = -1
        step = step.reshape(shape)
    return np.clip(np.round(values / step), -128, 127).astype(np.int8)
