"""Keep the convs a plan leaves float in fp32 when their input tensor is quantized elsewhere.

oneDNN's INT8 passes quantize every conv whose input variable carries a scale, computing
weight scales of their own (abs max per channel). A conv the plan leaves float can read a
tensor that has a scale for another reason: GFL's FPN output convs (ppdet keeps them in
Python lists, so they are planned float) read the lateral sums, which are planned joins
with quantized outputs. The fake-quant model runs those convs in float on the sums' values;
oneDNN ran two of them INT8 with weights rounded as training never simulated.

The conv then reads a float copy (`assign`) of its input: the copy carries no scale (oneDNN
propagates scales only through reshape/transpose/pool/slice/split/nearest upsampling/
concat/scale), so the pass leaves that conv fp32; it computes on the same values, the
dequantized tensor, as the fake-quant model does.

    copied = copy_float_conv_inputs(program, float_weights)   # old-IR Program, in place
"""
from slimext.compat.program_editing import insert_op, rename_input, sync_with_cpp
from slimext.deploy.global_pool import quantized_vars

CONV_TYPES = ("conv2d", "depthwise_conv2d")


def copy_float_conv_inputs(program, float_weights):
    """Give every conv whose filter is one of `float_weights` (the plan's float layers) and
    whose input is quantized a float copy of that input; the layers' filter names copied."""
    block = program.global_block()
    quantized = quantized_vars(block)
    copied = []
    for op in list(block.ops):
        if op.type not in CONV_TYPES:
            continue
        weight = op.input("Filter")[0].split("@")[0]   # an exact INT8 copy: '<w>@dequantized'
        source = op.input("Input")[0]
        if weight not in float_weights or source not in quantized:
            continue
        var = block.var(source)
        copy = block.create_var(name=source + "@float_copy", shape=var.shape, dtype=var.dtype,
                                persistable=False)
        insert_op(block, block.ops.index(op), type="assign", inputs={"X": [source]},
                  outputs={"Out": [copy]})
        rename_input(op, source, copy.name)
        copied.append(weight)
    if copied:
        sync_with_cpp(program)
    return copied
