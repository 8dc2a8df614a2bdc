"""Fold inference batch norms into the convolution before them, before conversion (for
ONNX Runtime, which the runtime asks for; the exported file keeps the program's ops).

ONNX Runtime folds conv + batch_norm itself only when the filter is a constant; behind a
DequantizeLinear it is not, and it would then run the conv in float. Folding
here keeps each conv's INT8 filter exact: batch norm scales output channel c by
f = gamma / sqrt(var + eps), which multiplies that channel's quantization step by |f| (and
flips the int8 values where f < 0); the shift becomes the conv's bias. Paddle Inference's
own passes (conv_bn_fuse) do the same.
"""
import numpy as np

CONV_TYPES = ("conv2d", "depthwise_conv2d")


def fold_batch_norms(program):
    """Rewrite program.ops in place; return how many batch norms and bias adds were folded."""
    producers = {}
    for op in program.ops:
        for names in op.outputs.values():
            for name in names:
                producers[name] = op
    uses = {}
    for op in program.ops:
        for names in op.inputs.values():
            for name in names:
                uses[name] = uses.get(name, 0) + 1
    for name in program.fetches:
        uses[name] = uses.get(name, 0) + 1
    folded, removed = 0, set()
    for bn in program.ops:
        if bn.type != "batch_norm":
            continue
        conv, bias_add = _conv_before(bn, producers, uses, program)
        if conv is None or not _fold(program, conv, bias_add, bn, producers, uses):
            continue
        removed.add(id(bn))
        if bias_add is not None:
            removed.add(id(bias_add))
        folded += 1
    program.ops = [op for op in program.ops if id(op) not in removed]
    return folded + _fold_bias_adds(program, uses)


def _fold_bias_adds(program, uses):
    """A conv followed by its bias add (axis 1, a 1-D parameter) gets the bias as input:
    the Conv-with-bias that ONNX runtimes expect (and that keeps the conv's INT8 pattern)."""
    producers = {name: op for op in program.ops for names in op.outputs.values()
                 for name in names}
    removed = set()
    for add in program.ops:
        if add.type != "elementwise_add" or add.attrs.get("axis") != 1:
            continue
        bias = add.input("Y")
        conv = producers.get(add.input("X"))
        if conv is None or conv.type not in CONV_TYPES or conv.input("Bias") or \
                uses.get(add.input("X")) != 1 or bias not in program.params or \
                program.params[bias].ndim != 1:
            continue
        conv.inputs["Bias"] = [bias]
        conv.outputs["Output"] = [add.output("Out")]
        removed.add(id(add))
    program.ops = [op for op in program.ops if id(op) not in removed]
    return len(removed)


def _conv_before(bn, producers, uses, program):
    """(conv, bias add or None) feeding this batch norm alone, or (None, None)."""
    source = bn.input("X")
    op = producers.get(source)
    bias_add = None
    if op is not None and op.type == "elementwise_add" and uses.get(source) == 1 and \
            op.attrs.get("axis") == 1 and op.input("Y") in program.params and \
            program.params[op.input("Y")].ndim == 1:
        bias_add, source = op, op.input("X")
        op = producers.get(source)
    if op is None or op.type not in CONV_TYPES or uses.get(source) != 1 or op.input("Bias"):
        return None, None
    return op, bias_add


def _fold(program, conv, bias_add, bn, producers, uses):
    params = program.params
    names = [bn.input(s) for s in ("Scale", "Bias", "Mean", "Variance")]
    if not all(n in params for n in names):
        return False
    gamma, beta, mean, var = (params[n].astype(np.float64) for n in names)
    factor = gamma / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
    if not _scale_filter(program, conv, factor, producers, uses):
        return False
    bias = params[bias_add.input("Y")].astype(np.float64) if bias_add is not None else 0.0
    bias_name = conv.output("Output") + "@bn_bias"
    params[bias_name] = (beta + (bias - mean) * factor).astype(np.float32)
    program.shapes[bias_name] = params[bias_name].shape
    conv.inputs["Bias"] = [bias_name]
    # The conv now writes what the batch norm wrote.
    conv.outputs["Output"] = [bn.output("Y")]
    return True


def _scale_filter(program, conv, factor, producers, uses):
    """Multiply output channel c of the conv's filter by factor[c]; False if it cannot."""
    params = program.params
    filter_name = conv.input("Filter")
    if filter_name in params:   # a float filter
        if uses.get(filter_name) != 1:
            return False
        weight = params[filter_name]
        params[filter_name] = (weight * factor.reshape(-1, 1, 1, 1)).astype(weight.dtype)
        return True
    dequantize = producers.get(filter_name)
    if dequantize is None or dequantize.type != "dequantize_linear":
        return False
    weight_name, scale_name = dequantize.input("X"), dequantize.input("Scale")
    if weight_name not in params or scale_name not in params or \
            uses.get(weight_name) != 1 or uses.get(scale_name) != 1 or \
            uses.get(filter_name) != 1 or params[weight_name].dtype != np.int8:
        return False
    weight, scale = params[weight_name], params[scale_name].astype(np.float64).reshape(-1)
    axis = dequantize.attrs.get("quant_axis", -1)
    if axis not in (0, -1) or scale.size not in (1, weight.shape[0]) or \
            np.any(np.abs(factor) < 1e-12):   # a zero step is no quantizer
        return False
    sign = np.where(factor < 0, -1, 1).astype(np.int16).reshape(-1, 1, 1, 1)
    params[weight_name] = np.clip(weight.astype(np.int16) * sign, -127, 127).astype(np.int8)
    params[scale_name] = (np.broadcast_to(scale, factor.shape) * np.abs(factor)) \
        .astype(np.float32)
    program.shapes[scale_name] = params[scale_name].shape
    dequantize.attrs["quant_axis"] = 0   # per-tensor becomes per-channel
    return True

