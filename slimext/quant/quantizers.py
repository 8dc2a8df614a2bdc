"""Every fake quantizer of a quantized model under one plain name, and a switch to bypass some.

Names follow the plan printout: `<layer path>/input` and `<layer path>/weight` for the
conv/linear quantizers PaddleSlim puts in, the plan's quantizer names (`neck:add#0/in1`,
`neck:concat#0/shared`) for the join quantizers. Sensitivity analysis, calibration and the
error monitor all address quantizers through these names.
"""
from contextlib import contextmanager

from slimext.compat import quantizer_internals
from slimext.quant.apply import QUANTIZERS_ATTR, quantizer_key


def layer_quantizers(model):
    """{'<path>/input' or '<path>/weight': fake-quant layer} for the wrapped conv/linear."""
    return {"{}/{}".format(path, place): quantizer
            for path, layer in model.named_sublayers()
            for place, quantizer in quantizer_internals.layer_quantizers(layer).items()}


def join_quantizers(model, plan):
    """{plan quantizer name: fake-quant layer} for the join quantizers of `plan`."""
    layers = getattr(model, QUANTIZERS_ATTR, None)
    if layers is None:
        return {}
    return {name: layers[quantizer_key(name)] for name in plan.quantizers}


def all_quantizers(model, plan):
    found = layer_quantizers(model)
    found.update(join_quantizers(model, plan))
    return found


def _identity(x, *args, **kwargs):
    return x


@contextmanager
def bypassed(quantizers):
    """Within the block the given fake-quant layers pass their input through unchanged."""
    quantizers = list(quantizers)
    for layer in quantizers:
        layer.forward = _identity
    try:
        yield
    finally:
        for layer in quantizers:
            del layer.forward
