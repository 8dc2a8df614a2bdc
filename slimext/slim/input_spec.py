"""The input spec a slim export traces a ppdet detector with."""


def prune_unused_inputs(model, input_spec):
    """Drop the inputs the traced program never reads.

    Trainer.post_quant passes every detector input (image, im_shape, scale_factor), and a
    program cannot be saved with a feed it does not use (PicoDet ignores im_shape).
    """
    import paddle
    from slimext.compat.ppdet_internals import prune_input_spec

    from slimext.compat.tracing import export_tracing

    try:
        with export_tracing():
            static_model = paddle.jit.to_static(model, input_spec=input_spec, full_graph=True)
            return prune_input_spec(input_spec, static_model.forward.main_program,
                                     static_model.forward.outputs)
    finally:
        model.__dict__.pop("forward", None)  # back to the dygraph forward


DETECTOR_INPUTS = ("image", "im_shape", "scale_factor")


def detector_inputs(input_spec):
    """A ppdet input spec with every detector input back in it.

    ppdet's Trainer.export prunes the spec by the program it traced, then hands the pruned
    spec to the slim export, which traces again: a forward that indexes an input its
    outputs never use (GFL reads inputs['im_shape']) fails with a KeyError. The export
    traces with all inputs and saves the program with the inputs ppdet kept.
    """
    import paddle

    if not (isinstance(input_spec, (list, tuple)) and len(input_spec) == 1
            and isinstance(input_spec[0], dict) and "image" in input_spec[0]):
        return input_spec
    spec = dict(input_spec[0])
    batch = spec["image"].shape[0]
    for name in DETECTOR_INPUTS[1:]:
        spec.setdefault(name, paddle.static.InputSpec(shape=[batch, 2], name=name))
    return [spec]
