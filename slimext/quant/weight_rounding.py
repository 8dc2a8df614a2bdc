"""Export INT8 weights on the exact integers the fake-quant model computes with.

The model's weight quantizer (Paddle's channel-wise fake quant-dequant kernel) and the
export's `QuantWeightPass` (numpy) round `w / scale * 127` in different float expressions
and tie rules, so a weight value that lies within an ulp of a half step lands on the next
integer in one of them. It is rare (1-2 elements in 11 of PP-YOLOE+ s's 83 weights, random
weights) but each is one weight step, and the first conv after it computes another number
than the model: one quantizer further on rounds differently, and the difference grows.

`weights_from_model` takes the model's fake-quantized weights (integers times
scale / 127 by construction); `match_int8_weights` rewrites the export's int8 weights to
those integers and says how many elements moved.
"""
import numpy as np

from slimext.compat.quantizer_internals import layer_quantizers


def weights_from_model(model):
    """{weight parameter name: fake-quantized weight (numpy)} of every wrapped layer
    (call in dygraph mode)."""
    import paddle

    found = {}
    with paddle.no_grad():
        for _, layer in model.named_sublayers():
            quantizer = layer_quantizers(layer).get("weight")
            weight = getattr(layer, "weight", None)
            if quantizer is not None and weight is not None:
                found[weight.name] = quantizer(weight).numpy()
    return found


def match_int8_weights(program, scope, place, fake_weights, bits=8):
    """Set each exported int8 weight to the integers of the model's fake-quant weight;
    returns {weight name: elements changed} for the weights that changed."""
    bound = float(2 ** (bits - 1) - 1)
    block = program.global_block()
    changed = {}
    for op in block.ops:
        if op.type != "dequantize_linear":
            continue
        name = op.input("X")[0]
        if name not in fake_weights or not block.var(name).persistable:
            continue
        tensor = scope.find_var(name).get_tensor()
        stored = np.array(tensor)
        scale = np.array(scope.find_var(op.input("Scale")[0]).get_tensor()).astype("float64")
        shape = [1] * stored.ndim
        axis = op.attr("quant_axis")
        if scale.size > 1:
            shape[axis] = -1
        fake = fake_weights[name].astype("float64")
        if fake.shape != stored.shape:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            integers = np.where(scale.reshape(shape) > 0,
                                fake / scale.reshape(shape) * bound, 0.0)
        integers = np.clip(np.round(integers), -bound - 1, bound).astype(stored.dtype)
        moved = int((integers != stored).sum())
        if moved:
            tensor.set(integers, place)
            changed[name] = moved
    return changed
