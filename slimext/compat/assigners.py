"""ppdet 2.6.0 label assigners on Paddle 3: the batch index has gt_labels' dtype (int32) and
is added to an argmax result (int64), which Paddle 3 refuses to mix.

The fix feeds the assigners int64 labels, so both sides are int64, and hands the assigned
labels back in the caller's dtype: the loss code downstream sees what it saw on Paddle 2.6.
"""
import functools
import inspect


def _with_int64_labels(forward):
    signature = inspect.signature(forward)

    @functools.wraps(forward)
    def wrapped(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        labels = bound.arguments["gt_labels"]
        original_dtype = labels.dtype
        bound.arguments["gt_labels"] = labels.astype("int64")
        outputs = forward(*bound.args, **bound.kwargs)
        return (outputs[0].astype(original_dtype),) + tuple(outputs[1:])

    wrapped._int64_labels = True
    return wrapped


def cast_batch_index_in_assigners():
    fixed = []
    for cls in assigners_adding_uncast_batch_index():
        if not getattr(cls.forward, "_int64_labels", False):
            cls.forward = _with_int64_labels(cls.forward)
        fixed.append(cls.__name__)
    return fixed


def adds_uncast_batch_index(cls):
    """True when cls.forward adds `batch_ind * num_max_boxes` to the int64 argmax index as
    is (ppdet 2.6.0); release/2.7.1 and develop cast it to the index's dtype first."""
    import inspect

    forward = getattr(cls.forward, "__wrapped__", cls.forward)
    try:
        source = inspect.getsource(forward)
    except (OSError, TypeError):
        return True  # no source to read: the fix is harmless on a fixed assigner
    return "+ batch_ind * num_max_boxes" in " ".join(source.split())


def assigners_adding_uncast_batch_index():
    from ppdet.modeling.assigners.atss_assigner import ATSSAssigner
    from ppdet.modeling.assigners.task_aligned_assigner import TaskAlignedAssigner

    return [cls for cls in (ATSSAssigner, TaskAlignedAssigner) if adds_uncast_batch_index(cls)]
