"""Route tensor joins written inside `forward` (x + y, paddle.add, paddle.concat) to a handler.

PaddleSlim only sees `nn.Layer`s; a join written as an operator never passes through one.
We patch the few Paddle entry points that create joins, once per process. With no active
handler the patched functions call the originals directly, so un-quantized models pay one
list check per op. The same entry points are used by dygraph and by `to_static` tracing
(static `Variable` operators), so quantizers applied here also end up in exported programs.

A handler learns *where* an op happens from a frame stack kept by forward hooks on every
sublayer of its model: a join is named by the innermost running layer, the op kind and
its ordinal within that layer's call (`neck:add#0`).
"""
from contextlib import contextmanager

import paddle

_HANDLERS = []
_ORIGINALS = {}

# (owner object, attribute, kind, operand order) for the Tensor/Variable operator methods.
_OPERATORS = (("__add__", "add", False), ("__radd__", "add", True),
              ("__sub__", "subtract", False), ("__rsub__", "subtract", True))
_FUNCTIONS = (("add", "add"), ("subtract", "subtract"), ("concat", "concat"))


def active_handler():
    return _HANDLERS[-1] if _HANDLERS else None


class handling:
    """Context manager: make `handler` receive the joins run inside the block."""

    def __init__(self, handler):
        self.handler = handler

    def __enter__(self):
        install()
        _HANDLERS.append(self.handler)
        return self.handler

    def __exit__(self, *exc):
        _HANDLERS.remove(self.handler)
        return False


@contextmanager
def suspended():
    """Ops inside the block are not joins: for bookkeeping that runs within a forward
    (an error monitor's arithmetic must not shift the join ordinals or get quantized)."""
    saved = list(_HANDLERS)
    _HANDLERS.clear()
    try:
        yield
    finally:
        _HANDLERS[:] = saved


def _operator_wrapper(original, kind, reflected):
    def method(self, other):
        handler = active_handler()
        if handler is None:
            return original(self, other)
        operands = [other, self] if reflected else [self, other]

        def compute(a, b):
            return original(b, a) if reflected else original(a, b)

        return handler.on_join(kind, operands, lambda ops: compute(*ops))

    method.__name__ = original.__name__
    return paddle.jit.not_to_static(method)


def _function_wrapper(original, kind):
    if kind == "concat":
        def function(x, axis=0, name=None):
            handler = active_handler()
            if handler is None or not isinstance(x, (list, tuple)):
                return original(x, axis=axis, name=name)
            return handler.on_join(kind, list(x), lambda ops: original(ops, axis=axis, name=name))
    else:
        def function(x, y, name=None):
            handler = active_handler()
            if handler is None:
                return original(x, y, name=name)
            return handler.on_join(kind, [x, y], lambda ops: original(ops[0], ops[1], name=name))

    function.__name__ = original.__name__
    function.__doc__ = original.__doc__
    return paddle.jit.not_to_static(function)


def install():
    """Patch the join entry points once per process (idempotent)."""
    if _ORIGINALS:
        return
    from paddle.static import Variable

    for cls in (paddle.Tensor, Variable):
        for attr, kind, reflected in _OPERATORS:
            original = getattr(cls, attr)
            _ORIGINALS[(cls, attr)] = original
            setattr(cls, attr, _operator_wrapper(original, kind, reflected))
    for attr, kind in _FUNCTIONS:
        original = getattr(paddle, attr)
        wrapped = _function_wrapper(original, kind)
        for module in (paddle, paddle.tensor):
            if getattr(module, attr, None) is original:
                _ORIGINALS[(module, attr)] = original
                setattr(module, attr, wrapped)


class FrameStack:
    """Which layer's forward is running, kept by hooks on every sublayer of one model."""

    def __init__(self, model):
        self.frames = []
        self._hook_handles = []
        for path, layer in [("", model)] + list(model.named_sublayers()):
            self._hook_handles.append(layer.register_forward_pre_hook(self._pre_hook(path, layer)))
            self._hook_handles.append(layer.register_forward_post_hook(self._post_hook))

    def _pre_hook(self, path, layer):
        def hook(_layer, inputs):
            if not path:  # a new model call: drop frames an exception may have left
                self.frames.clear()
            self.frames.append(Frame(path, layer))
            return None

        return hook

    def _post_hook(self, _layer, inputs, outputs):
        if self.frames:
            self.frames.pop()
        return None

    def top(self):
        """The running frame; a root frame when the model's forward runs without its
        hooks (to_static traces `forward` directly when saving)."""
        if not self.frames:
            self.frames.append(Frame("", None))
        return self.frames[-1]

    def remove(self):
        for handle in self._hook_handles:
            handle.remove()
        self._hook_handles = []


class Frame:
    """One call of one layer's forward: counts the joins it runs, by kind."""

    def __init__(self, path, layer):
        self.path = path
        self.layer = layer
        self.counts = {}

    def next_site(self, kind):
        ordinal = self.counts.get(kind, 0)
        self.counts[kind] = ordinal + 1
        return "{}:{}#{}".format(self.path or "<model>", kind, ordinal)
