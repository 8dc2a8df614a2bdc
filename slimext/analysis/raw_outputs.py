"""Run a model on one batch and return its raw outputs as float arrays.

Sensitivity is measured on what the network computes, before any decoding: for a ppdet
detector that is what `model.head` returns (scores, box distances), not the boxes after
NMS, whose count and order jump with tiny changes. For any other layer it is the model's
own output.
"""
import numpy as np
import paddle


def float_arrays(value):
    """Every floating-point tensor in a (nested) output, flattened, in a stable order."""
    found = []
    if isinstance(value, dict):
        for key in sorted(value):
            found.extend(float_arrays(value[key]))
    elif isinstance(value, (list, tuple)):
        for item in value:
            found.extend(float_arrays(item))
    elif isinstance(value, paddle.Tensor) and value.dtype in (paddle.float16, paddle.float32,
                                                              paddle.float64):
        found.append(value.numpy().reshape(-1))
    return found


def call_model(model, batch):
    """model(*batch) for a list/tuple batch, model(batch) otherwise (a ppdet input dict)."""
    if isinstance(batch, (list, tuple)):
        return model(*batch)
    return model(batch)


def model_outputs(model, batch):
    return float_arrays(call_model(model, batch))


def head_outputs(model, batch):
    """What `model.head` returned during one forward of `model` on `batch`."""
    captured = []

    def keep(_layer, _inputs, outputs):
        captured.append(float_arrays(outputs))

    handle = model.head.register_forward_post_hook(keep)
    try:
        call_model(model, batch)
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError("{}.head did not run during forward; measure the model's own "
                           "outputs instead".format(type(model).__name__))
    return [np.concatenate(arrays) for arrays in zip(*captured)] if len(captured) > 1 \
        else captured[0]


def raw_output_runner(model):
    """head_outputs for a ppdet detector (it has a `head`), model_outputs for anything else."""
    is_detector = hasattr(model, "model_arch") and isinstance(getattr(model, "head", None),
                                                              paddle.nn.Layer)
    return head_outputs if is_detector else model_outputs
