"""Route tensor joins written inside `forward` (x + y, x * g, concat, ...) to a handler.

PaddleSlim only sees `nn.Layer`s; a join written as an operator never passes through one.
We patch the Paddle entry points that create joins (`PATCH_POINTS`), once per process.
With no active handler the patched functions call the originals directly, so un-quantized
models pay one context-variable read per op. Dygraph and `to_static` tracing (static
`Variable` operators) use the same entry points, so quantizers applied here also end up
in exported programs.

Which handler is active lives in a `contextvars.ContextVar`: each thread (and each asyncio
context) has its own, and it is set only for the duration of a `with handling(...)` block.
A quantized model's own call is such a block (`bind_root`, through the patched
`Layer.__call__`), so the handler is off again after every forward, raised or not, and a
model running in another thread never sees it.

A handler learns *where* an op happens from the frames of its activation, pushed by forward
hooks on every sublayer of its model: a join is named by the innermost running layer, the
op kind and its ordinal within that layer's call (`neck:add#0`).
"""
import contextvars
import functools
import threading
from collections import namedtuple
from contextlib import contextmanager

import paddle

# The handler stack of the running context; () when nothing is intercepted.
_ACTIVE = contextvars.ContextVar("slimext_join_handlers", default=())
_ORIGINALS = {}
_INSTALL_LOCK = threading.Lock()  # two threads quantizing at once patch Paddle once
_installed = False
# Attribute (in a layer's __dict__) naming the handler its calls activate.
ROOT_HANDLER_ATTR = "_slimext_join_handler"

PatchPoint = namedtuple("PatchPoint", "attribute kind form")
# Every Paddle entry point that can join activations and what interception does with it.
# form: "operator" (x + y), "reflected" (1 + x), "binary" (f(x, y)), "list" (f([a, b, ...])):
# routed to the handler, which may quantize the operands and the result;
# "inplace" (x.add_(y)): reported as a join that cannot be quantized (the result must be
# written into x), never changed.
PATCH_POINTS = (
    PatchPoint("__add__", "add", "operator"),
    PatchPoint("__radd__", "add", "reflected"),
    PatchPoint("__sub__", "subtract", "operator"),
    PatchPoint("__rsub__", "subtract", "reflected"),
    PatchPoint("add", "add", "binary"),            # paddle.add, paddle.tensor.math.add, x.add(y)
    PatchPoint("subtract", "subtract", "binary"),
    PatchPoint("__mul__", "multiply", "operator"),  # a gate when one side broadcasts
    PatchPoint("__rmul__", "multiply", "reflected"),
    PatchPoint("multiply", "multiply", "binary"),
    PatchPoint("add_n", "add", "list"),            # an n-way add, placed like an add
    PatchPoint("concat", "concat", "list"),
    PatchPoint("stack", "stack", "list"),          # placed like a concat
    PatchPoint("matmul", "matmul", "binary"),      # attention: q @ k^T, weights @ v
    PatchPoint("add_", "add", "inplace"),
    PatchPoint("subtract_", "subtract", "inplace"),
    PatchPoint("multiply_", "multiply", "inplace"),
)


def refined_kind(kind, operands):
    """'gate' for a multiply that scales a feature map by a broadcast factor (an SE block's
    x * sigmoid(fc(pool(x))): one operand is 1 where the other is not); else `kind`.

    A gate sits between convs and is worth INT8; a product of two same-shaped maps (a
    detection head's score times its IoU estimate) is usually post-processing.
    """
    if kind != "multiply" or len(operands) != 2:
        return kind
    shapes = [getattr(op, "shape", None) for op in operands]
    if any(shape is None or len(shape) < 3 for shape in shapes) or \
            len(shapes[0]) != len(shapes[1]):
        return kind
    broadcast = any((a == 1) != (b == 1) for a, b in zip(*shapes))
    return "gate" if broadcast else kind


# Where the functions above are bound: the tensor classes (dygraph Tensor, old-IR Variable,
# PIR Value: methods) and Paddle's modules.
_FUNCTION_OWNERS = ("paddle", "paddle.tensor", "paddle.tensor.math",
                    "paddle.tensor.manipulation", "paddle.tensor.linalg")
# Spellings that bypass every patch point: ops Paddle exposes only through _C_ops or the
# legacy layers API, and functions imported by name before the patch (`from paddle import
# add`). The coverage check (slimext.quant.coverage) finds such joins in the traced program.


class Activation:
    """One `handling` block: the handler and the frames of the layers running inside it."""

    __slots__ = ("handler", "frames")

    def __init__(self, handler):
        self.handler = handler
        self.frames = []


def _current():
    stack = _ACTIVE.get()
    return stack[-1] if stack else None


def active_handler():
    activation = _current()
    return activation.handler if activation is not None else None


@contextmanager
def handling(handler):
    """Make `handler` receive the joins run inside the block, in this context only."""
    install()
    token = _ACTIVE.set(_ACTIVE.get() + (Activation(handler),))
    try:
        yield handler
    finally:
        _ACTIVE.reset(token)


@contextmanager
def suspended():
    """Ops inside the block are not joins: for bookkeeping that runs within a forward
    (an error monitor's arithmetic must not shift the join ordinals or get quantized)."""
    token = _ACTIVE.set(_ACTIVE.get() + (Activation(None),))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def bind_root(model, handler):
    """Every call of `model` runs inside `handling(handler)`; `unbind_root` undoes it."""
    install()
    object.__setattr__(model, ROOT_HANDLER_ATTR, handler)


def unbind_root(model, handler):
    if model.__dict__.get(ROOT_HANDLER_ATTR) is handler:
        object.__delattr__(model, ROOT_HANDLER_ATTR)


# Where a wrapped function takes its operands: the first parameter (its Paddle names and
# aliases), and for two-operand functions the second one.
FIRST_OPERAND = ("x", "input", "tensors", "inputs")
SECOND_OPERAND = ("y", "other")


class _Call:
    """One call of a wrapped function: its arguments as given, with the operand slots
    found, so the operands can be swapped for quantized ones and everything else passed
    through unchanged."""

    def __init__(self, args, kwargs, operand_count):
        self.args, self.kwargs = list(args), dict(kwargs)
        self.slots = []
        for position, names in enumerate((FIRST_OPERAND, SECOND_OPERAND)[:operand_count]):
            if position < len(self.args):
                self.slots.append(position)
                continue
            given = [name for name in names if name in self.kwargs]
            if len(given) != 1:
                self.slots = None  # not a form we understand: Paddle decides
                return
            self.slots.append(given[0])

    def get(self, slot):
        return self.args[slot] if isinstance(slot, int) else self.kwargs[slot]

    def replaced(self, values):
        args, kwargs = list(self.args), dict(self.kwargs)
        for slot, value in zip(self.slots, values):
            if isinstance(slot, int):
                args[slot] = value
            else:
                kwargs[slot] = value
        return args, kwargs


def _forwarding(function, original):
    """Mark `function` as a wrapper that calls its current `__wrapped__` (so a stand-in can
    be put beneath it, see slimext.compat.legacy_static_ops) and looks like `original`
    (name, doc, signature)."""
    functools.update_wrapper(function, original)
    function._slimext_forwards = True
    return paddle.jit.not_to_static(function)


def is_python_number(value):
    return isinstance(value, (bool, int, float, complex))


def _scalar_op(handler, operands, result):
    """`x + 0.5`, `arange(w) + offset`: never a join, and given no site, so a path that
    runs more of them (a head's training path generating anchors) numbers its joins as the
    discovered path did. A handler may still follow the value (the tracer does)."""
    follow = getattr(handler, "on_scalar_op", None)
    if follow is not None:
        follow(operands, result)
    return result


def _operator_wrapper(original, kind, reflected):
    def method(self, *args, **kwargs):
        target = method.__wrapped__
        handler = active_handler()
        if handler is None or len(args) + len(kwargs) != 1:
            return target(self, *args, **kwargs)
        other = args[0] if args else next(iter(kwargs.values()))
        operands = [other, self] if reflected else [self, other]
        if is_python_number(other):
            return _scalar_op(handler, operands, target(self, *args, **kwargs))

        def compute(ops):
            a, b = ops
            if reflected:
                a, b = b, a
            return target(a, b) if args else target(a, **{next(iter(kwargs)): b})

        return handler.on_join(refined_kind(kind, operands), operands, compute)

    return _forwarding(method, original)


def _joining_wrapper(original, point):
    """paddle.add(x, y, ...), paddle.concat([a, b], ...) and the like: the operands go to
    the handler, every other argument (alpha, axis, name, aliases) through unchanged."""
    operand_count = 2 if point.form == "binary" else 1

    def function(*args, **kwargs):
        target = function.__wrapped__
        handler = active_handler()
        if handler is None:
            return target(*args, **kwargs)
        call = _Call(args, kwargs, operand_count)
        if call.slots is None:
            return target(*args, **kwargs)
        operands = [call.get(slot) for slot in call.slots]
        if point.form == "binary" and any(is_python_number(op) for op in operands):
            return _scalar_op(handler, operands, target(*args, **kwargs))
        if point.form == "list":
            if not isinstance(operands[0], (list, tuple)) or \
                    (point.attribute == "add_n" and len(operands[0]) < 2):
                return target(*args, **kwargs)
            operands = list(operands[0])
        if kwargs.get("out") is not None:
            # The result must land in `out`: written as the user wrote it, reported.
            result = target(*args, **kwargs)
            handler.on_unquantizable_join(point.kind, point.attribute + "(out=)",
                                          [result] + operands[1:])
            return result

        def compute(ops):
            values = [list(ops)] if point.form == "list" else ops
            new_args, new_kwargs = call.replaced(values)
            return target(*new_args, **new_kwargs)

        kind = refined_kind(point.kind, operands) if point.form == "binary" else point.kind
        return handler.on_join(kind, operands, compute)

    return _forwarding(function, original)


def _inplace_wrapper(original, point):
    def function(*args, **kwargs):
        target = function.__wrapped__
        handler = active_handler()
        if handler is not None:
            call = _Call(args, kwargs, 2)
            if call.slots is not None:
                handler.on_unquantizable_join(point.kind, point.attribute,
                                              [call.get(slot) for slot in call.slots])
        return target(*args, **kwargs)

    return _forwarding(function, original)


def _function_wrapper(original, point):
    if point.form == "inplace":
        return _inplace_wrapper(original, point)
    return _joining_wrapper(original, point)


def _owners():
    import importlib

    from paddle.static import Variable

    modules = [importlib.import_module(name) for name in _FUNCTION_OWNERS]
    classes = [paddle.Tensor, Variable]
    # Paddle 3 traces to_static into PIR, whose values have their own operator methods.
    pir_value = getattr(getattr(paddle, "pir", None), "Value", None)
    if isinstance(pir_value, type) and pir_value not in classes:
        classes.append(pir_value)
    return classes, modules


def _root_aware_call(original_call):
    def __call__(self, *inputs, **kwargs):
        handler = self.__dict__.get(ROOT_HANDLER_ATTR)
        if handler is None:
            return original_call(self, *inputs, **kwargs)
        with handling(handler):
            return original_call(self, *inputs, **kwargs)

    __call__.__wrapped__ = original_call
    return __call__


def install():
    """Patch every entry point of PATCH_POINTS and `Layer.__call__`, once per process."""
    global _installed
    if _installed:
        return
    with _INSTALL_LOCK:
        if not _installed:
            _install()
            _installed = True


def patch_targets():
    """[(owner, attribute, PatchPoint)]: every class or module attribute `install` replaces
    (the tensor operators on each tensor class, the functions wherever Paddle binds them)."""
    classes, modules = _owners()
    targets = []
    for point in PATCH_POINTS:
        if point.form in ("operator", "reflected"):
            targets.extend((cls, point.attribute, point) for cls in classes)
            continue
        for owner in classes + modules:
            original = owner.__dict__.get(point.attribute) if isinstance(owner, type) \
                else getattr(owner, point.attribute, None)
            if original is not None and callable(original):
                targets.append((owner, point.attribute, point))
    return targets


def _install():
    # One wrapper per distinct original: the same function is bound under several names.
    wrapped = {}
    for owner, attribute, point in patch_targets():
        original = getattr(owner, attribute)
        if getattr(original, "_old_ir_fallback", False):
            raise RuntimeError("join interception must be installed before an export "
                               "scope starts (slimext.compat.tracing.export_tracing)")
        key = (id(original), point)
        if key not in wrapped:
            if point.form in ("operator", "reflected"):
                wrapped[key] = _operator_wrapper(original, point.kind, point.form == "reflected")
            else:
                wrapped[key] = _function_wrapper(original, point)
        _ORIGINALS[(owner, attribute)] = original
        setattr(owner, attribute, wrapped[key])
    layer = paddle.nn.Layer
    _ORIGINALS[(layer, "__call__")] = layer.__call__
    layer.__call__ = _root_aware_call(layer.__call__)


def patched_entry_points():
    """['paddle.Tensor.__add__', 'paddle.add', ...]: every place interception replaced."""
    install()
    names = []
    for owner, attribute in _ORIGINALS:
        prefix = owner.__module__ + "." + owner.__name__ if isinstance(owner, type) \
            else owner.__name__
        names.append("{}.{}".format(prefix, attribute))
    return names


class FrameStack:
    """Which layer's forward is running, kept by hooks on every sublayer of one model.

    The frames belong to the current activation of `owner` (see `handling`), so two
    contexts running the same model keep separate stacks and nothing outlives a forward.
    """

    def __init__(self, model, owner):
        self.owner = owner
        self._hook_handles = []
        # Hooks are partials of bound methods, not closures: a deep copy of the model
        # (ppdet's SimpleModelEMA) then gets hooks bound to the copied stack and handler.
        for path, layer in [("", model)] + list(model.named_sublayers()):
            self._hook_handles.append(layer.register_forward_pre_hook(
                functools.partial(self._enter, path)))
            self._hook_handles.append(layer.register_forward_post_hook(self._leave))

    def _frames(self):
        activation = _current()
        if activation is None or activation.handler is not self.owner:
            return None
        return activation.frames

    def _enter(self, path, layer, inputs):
        frames = self._frames()
        if frames is not None:
            frames.append(Frame(path, layer))
        return None

    def _leave(self, _layer, inputs, outputs):
        frames = self._frames()
        if frames:
            frames.pop()
        return None

    def top(self):
        """The running frame; a root frame when the model's forward runs without its
        hooks (to_static traces `forward` directly when saving)."""
        frames = self._frames()
        if frames is None:
            raise RuntimeError("FrameStack.top() outside an activation of its handler")
        if not frames:
            frames.append(Frame("", None))
        return frames[-1]

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
