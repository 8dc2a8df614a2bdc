"""The one place slimext reads or writes private attributes of Paddle's and PaddleSlim's
fake-quant layers.

Per-layer bit widths, calibrated scales, scale sync and export need state that those
packages keep in underscore attributes (PaddleSlim 2.6 `QAT` builds Paddle's
`paddle.nn.quant.quant_layers`). If a release renames one, a quiet `getattr(..., None)`
would silently drop per-layer bits or scales; every access here fails loudly instead,
naming the attribute and the installed versions.
"""
from slimext.compat.versions import version_text

INPUT_QUANTIZER = "_fake_quant_input"     # on QuantizedConv2D / QuantizedLinear
WEIGHT_QUANTIZER = "_fake_quant_weight"
BITS = "_quant_bits"                       # on every fake-quant layer
# FakeQuantMovingAverageAbsMax: scale = accum / state, both moving averages.
SCALE, STATE, ACCUM = "_scale", "_state", "_accum"
MOVING_RATE = "_moving_rate"
ACT_PREPROCESS = "_act_preprocess"         # PACT clipping on a wrapped layer


class QuantizerInternalsChanged(RuntimeError):
    """An attribute slimext relies on is missing: the installed Paddle/PaddleSlim moved it."""


def _require(obj, attr, what):
    if getattr(obj, attr, None) is None:
        raise QuantizerInternalsChanged(
            "{} ({}) has no attribute {!r}, which slimext reads for {}; this Paddle {} / "
            "PaddleSlim {} keeps it elsewhere: use a supported stack (see stacks/) or update "
            "slimext.compat.quantizer_internals".format(
                type(obj).__name__, getattr(type(obj), "__module__", "?"), attr, what,
                version_text("paddle"), version_text("paddleslim")))
    return getattr(obj, attr)


def layer_quantizers(layer):
    """{'input': quantizer, 'weight': quantizer} of a layer PaddleSlim wrapped ({} if none)."""
    return {place: getattr(layer, attr) for place, attr in
            (("input", INPUT_QUANTIZER), ("weight", WEIGHT_QUANTIZER))
            if getattr(layer, attr, None) is not None}


def quant_bits(quantizer):
    return _require(quantizer, BITS, "bit widths")


def set_quant_bits(quantizer, bits):
    _require(quantizer, BITS, "per-layer bit widths")
    setattr(quantizer, BITS, bits)


def moving_rate(quantizer):
    return _require(quantizer, MOVING_RATE, "the moving-average rate")


def scale_tensor(quantizer):
    """The tensor holding the quantizer's scale (its name is the export's scale variable)."""
    return _require(quantizer, SCALE, "scales")


def moving_average_state(quantizer):
    """(scale, state, accum) tensors of a moving-average abs-max quantizer."""
    return tuple(_require(quantizer, attr, "moving-average scales")
                 for attr in (SCALE, STATE, ACCUM))


def is_moving_average(quantizer):
    """True for a quantizer with a moving-average scale (state and accumulator)."""
    return all(getattr(quantizer, attr, None) is not None for attr in (SCALE, STATE, ACCUM))


def start_moving_average_at_next_batch(quantizer):
    """Give the initial state and accumulator (1 and 1 in Paddle) a negligible weight, so
    the next training batch sets the scale to its own abs max and the average goes on from
    there. Not zero: Paddle's kernel then stops accumulating (the scale follows each batch
    alone; measured on 2.6.2 and 3.3.1)."""
    import numpy as np

    _, state, accum = moving_average_state(quantizer)
    for tensor in (state, accum):
        tensor.set_value(np.full(tensor.shape, 1e-6, dtype="float32"))


def set_moving_average_state(quantizer, scale, state, accum):
    for attr, value in ((SCALE, scale), (STATE, state), (ACCUM, accum)):
        _require(quantizer, attr, "moving-average scales").set_value(value)


def remove_act_preprocess(model):
    """Detach PACT clipping layers; returns what restore_act_preprocess puts back."""
    removed = []
    for layer in model.sublayers():
        if getattr(layer, ACT_PREPROCESS, None) is not None:
            removed.append((layer, getattr(layer, ACT_PREPROCESS)))
            setattr(layer, ACT_PREPROCESS, None)
    return removed


def restore_act_preprocess(removed):
    for layer, preprocess in removed:
        setattr(layer, ACT_PREPROCESS, preprocess)


def quantize_layer_inputs_only(slim_qat, model):
    """Wrap conv/linear with input and weight quantizers but no output observers: PaddleSlim's
    `QAT` does both in one call; its first half is a private member of its ImperativeQuantAware."""
    quantize_inputs = _require(_require(slim_qat, "imperative_qat", "input-only wrapping"),
                               "_quantize_inputs", "input-only wrapping")
    quantize_inputs.apply(model)
