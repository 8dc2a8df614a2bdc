"""Workarounds for ppdet 2.6.0 bugs that bite when several models are built in one process."""
import copy
import functools
import inspect


def copy_mutable_defaults(cls, name):
    """Give each cls(...) a fresh copy of parameter `name`'s default.

    LCPAN (PicoDet's neck) appends to its `spatial_scales` default list when
    num_features=4, so the second PicoDet built in a process gets 5 scales and fails in
    forward (`assert len(inputs) == len(self.in_channels)`).
    """
    init = cls.__init__
    if getattr(init, "_copies_default", None) == name:
        return
    signature = inspect.signature(init)
    pristine = copy.deepcopy(signature.parameters[name].default)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        if name not in bound.arguments:
            kwargs[name] = copy.deepcopy(pristine)
        return init(self, *args, **kwargs)

    __init__._copies_default = name
    cls.__init__ = __init__


def apply_ppdet_fixes():
    from ppdet.modeling.necks.lc_pan import LCPAN

    copy_mutable_defaults(LCPAN, "spatial_scales")
