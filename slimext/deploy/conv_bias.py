"""Give each conv bias of an export the form Paddle Inference fuses into the conv.

Paddle's `Conv2D` with a bias is traced as `conv2d` -> `elementwise_add(out, reshape2(b))`:
the bias arrives through a `reshape2` to [1, C, 1, 1], and the conv-bias fuse passes
(which want a 1-D persistable bias on axis 1) leave that add alone. On CPU each such add is
a separate binary op, and in an INT8 program an fp32 island with reorders around it; a
PicoDet head has 16 of them. Rewriting the add to `elementwise_add(out, b, axis=1)` and
dropping the reshape changes no number and lets the passes fold the bias into the conv.

    folded = fold_conv_biases(program)        # a static (old-IR) Program, in place
    rewrite_saved_model("out/model")          # out/model.pdmodel, .pdiparams unchanged
    python -m slimext.deploy.conv_bias output_inference/picodet_s_320_coco_lcnet
"""
import os

from slimext.compat.program_editing import remove_op, rename_input, sync_with_cpp
from slimext.fileio import atomic_path

CONV_TYPES = ("conv2d", "depthwise_conv2d", "conv2d_transpose")


def _channel_shape(shape, channels):
    """True for [1, C, 1, ..., 1] (the reshape that puts a bias on the channel axis)."""
    shape = list(shape)
    return len(shape) >= 3 and shape[0] == 1 and shape[1] == channels and \
        all(d == 1 for d in shape[2:])


def _foldable(block, reshape, producers, consumers):
    """The conv-bias add fed by this reshape2, or None when it is anything else."""
    source = reshape.input("X")[0]
    var = block._find_var_recursive(source)
    if var is None or not var.persistable or len(var.shape) != 1:
        return None
    if not _channel_shape(reshape.attr("shape"), var.shape[0]):
        return None
    reshaped = reshape.output("Out")[0]
    readers = consumers.get(reshaped, [])
    if len(readers) != 1 or readers[0].type != "elementwise_add":
        return None
    add = readers[0]
    if add.input("Y") != [reshaped]:
        return None
    producer = producers.get(add.input("X")[0])
    if producer is None or producer.type not in CONV_TYPES:
        return None
    return add


def fold_conv_biases(program):
    """Rewrite every reshaped conv-bias add of `program`'s main block; how many."""
    block = program.global_block()
    producers, consumers = {}, {}
    for op in block.ops:
        for name in op.output_arg_names:
            producers[name] = op
        for name in op.input_arg_names:
            consumers.setdefault(name, []).append(op)
    folded = 0
    for index in reversed(range(len(block.ops))):
        reshape = block.ops[index]
        if reshape.type != "reshape2":
            continue
        add = _foldable(block, reshape, producers, consumers)
        if add is None:
            continue
        outputs = list(reshape.output_arg_names)  # the reshaped bias and its XShape
        rename_input(add, reshape.output("Out")[0], reshape.input("X")[0])
        add._set_attr("axis", 1)
        remove_op(block, index)   # frees the op's desc: read nothing of it after this
        for name in outputs:
            block._remove_var(name)
        folded += 1
    if folded:
        sync_with_cpp(program)
    return folded


def rewrite_saved_model(path_prefix):
    """Fold the conv biases of `path_prefix`.pdmodel in place (atomically); how many.

    Only the program changes: the parameters file stays as it is.
    """
    import paddle

    from slimext.compat.tracing import export_tracing

    model_file = path_prefix + ".pdmodel"
    with export_tracing():   # an old-IR program, edited with old-IR operators
        was_dynamic = paddle.in_dynamic_mode()
        paddle.enable_static()   # old-IR operators can only be built in static mode
        try:
            with open(model_file, "rb") as f:
                program = paddle.static.Program.parse_from_string(f.read())
            folded = fold_conv_biases(program)
            serialized = program.desc.serialize_to_string()
        finally:
            if was_dynamic:
                paddle.disable_static()
    if folded:
        with atomic_path(model_file) as staging:
            with open(staging, "wb") as f:
                f.write(serialized)
    return folded


def rewrite_export_dir(model_dir):
    """`rewrite_saved_model` for a ppdet export folder (model.pdmodel)."""
    return rewrite_saved_model(os.path.join(model_dir, "model"))


def main(argv=None):
    """`python -m slimext.deploy.conv_bias DIR...`: rewrite exports made elsewhere (e.g. by
    PaddleDetection's own tools/export_model.py)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__.split(":")[0])
    parser.add_argument("model_dirs", nargs="+", help="export folders with model.pdmodel")
    for model_dir in parser.parse_args(argv).model_dirs:
        if not os.path.isfile(os.path.join(model_dir, "model.pdmodel")):
            raise SystemExit("{} has no model.pdmodel (an export folder is needed)"
                             .format(model_dir))
        print("{}: {} conv biases folded".format(model_dir, rewrite_export_dir(model_dir)))


if __name__ == "__main__":
    main()
