"""Run global average pools of a QDQ export as a float mean, not as oneDNN INT8 pool2d.

An SE/ESE block pools a whole feature map to one value per channel (`AdaptiveAvgPool2D(1)`)
and quantizes the pooled vector for the next conv. oneDNN's INT8 passes run `pool2d` as a
scale-preserving INT8 op: the pool's int8 input and output share one scale. Its input then
takes either the scale of a quantizer already on that map (the average is rounded to the
map's step, often 10x coarser than the pooled vector's own scale) or, with none there, the
pooled vector's scale propagated back to the map (every value above it clipped before
averaging). Both differ from the fake-quant model, which averages in float; a three-conv
model with one pool gave INT8 half its output range away from fake-quant.

`reduce_mean` over the spatial axes computes the same numbers and is not an INT8 op for
oneDNN, so the mean runs in float on the dequantized map, as training simulated; the next
conv's quantizer applies as planned. It is slow, though: oneDNN runs it as a plain kernel
behind layout reorders (6 of them took 12 of PicoDet-S 320's 46 ms). So only a pool whose
map has no quantizer of its own is rewritten, the case that clips the map (half the output
range); a pool reading a quantized map (an SE block whose gate quantizes the map) stays an
INT8 pool2d: its averages land on the map's step, at most one step of the pooled vector's
quantizer away (0.0047 of the range on ppdet's SEModule). Only global pools are rewritten
(the same values by definition); a windowed average pool is left as it is.

    rewritten = global_pools_as_mean(program)    # a static (old-IR) Program, in place
"""
from slimext.compat.program_editing import insert_op, remove_op, sync_with_cpp

SPATIAL_AXES = {"NCHW": [2, 3], "NHWC": [1, 2]}


def _is_global_average(op):
    if op.type != "pool2d" or op.attr("pooling_type") != "avg":
        return False
    if op.attr("global_pooling"):
        return True
    return bool(op.attr("adaptive")) and list(op.attr("ksize")) == [1, 1]


def quantized_vars(block):
    """Activations with a quantizer: what a quantize_linear reads, and the float copy its
    dequantize_linear writes (a consumer reads either)."""
    names = set()
    for op in block.ops:
        if op.type == "quantize_linear":
            names.update(op.input("X"))
        elif op.type == "dequantize_linear":
            names.update(op.output("Y"))
    return names


def global_pools_as_mean(program):
    """Replace every global average pool2d of the main block whose map is not quantized
    with reduce_mean; how many."""
    block = program.global_block()
    quantized = quantized_vars(block)
    rewritten = 0
    for index in reversed(range(len(block.ops))):
        op = block.ops[index]
        if not _is_global_average(op) or op.input("X")[0] in quantized:
            continue
        axes = SPATIAL_AXES.get(op.attr("data_format") or "NCHW")
        if axes is None:
            continue
        source, target = op.input("X")[0], op.output("Out")[0]
        remove_op(block, index)   # frees the op's desc: read nothing of it after this
        insert_op(block, index, type="reduce_mean", inputs={"X": [source]},
                  outputs={"Out": [target]},
                  attrs={"dim": axes, "keep_dim": True, "reduce_all": False})
        rewritten += 1
    if rewritten:
        sync_with_cpp(program)
    return rewritten
