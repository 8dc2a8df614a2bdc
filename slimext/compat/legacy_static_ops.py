"""Paddle 3.x: let the C++-only tensor functions build old-IR (ProgramDesc) programs again.

From Paddle 3.0 on, about sixty functions (`paddle.multiply`, `F.sigmoid`, `paddle.matmul`,
`F.grid_sample`, ...) are bound straight to C++ and accept only dygraph tensors and PIR values. Tracing a
model into the old IR, which Paddle Inference's oneDNN INT8 passes still require, then
fails at the first of them (ppdet's LCNet: `paddle.multiply ... must be Value, but got
Variable`). Under old-IR static mode the wrappers installed here append the op the old IR
knows; everywhere else they call Paddle's own function.

Each builder takes exactly the parameters of the function it stands in for (same names,
order, kinds and defaults; tests/test_old_ir_builders.py compares them with
`inspect.signature` and every builder's result with dygraph), computes what Paddle
computes for every value it accepts, and refuses a value it cannot build
(`OldIrArgumentError`, naming the function) instead of computing something else.

They are installed only for the duration of an export trace (`slimext.compat.tracing`) and
removed afterwards: outside it Paddle's functions are untouched.
"""
import functools
import inspect


class OldIrArgumentError(TypeError):
    """A call the old-IR stand-in cannot build exactly; the message names the function."""


def _refuse(name, what):
    raise OldIrArgumentError(
        "paddle.{}: {} is not supported while tracing into the old IR (slimext's export); "
        "write the model without it, or export on Paddle 2.6".format(name, what))


def _in_old_ir_static_mode():
    from paddle.base.framework import in_dygraph_mode, in_pir_mode

    return not in_dygraph_mode() and not in_pir_mode()


def _append(op_type, inputs, attrs=None, dtype=None):
    from paddle.base.layer_helper import LayerHelper

    helper = LayerHelper(op_type)
    out = helper.create_variable_for_type_inference(dtype=dtype or inputs["X"].dtype)
    helper.append_op(type=op_type, inputs={k: [v] for k, v in inputs.items()},
                     outputs={"Out": [out]}, attrs=attrs or {})
    return out


def _var_dtype(dtype):
    from paddle.base.framework import convert_np_dtype_to_dtype_

    return convert_np_dtype_to_dtype_(dtype)


def _no_out(name, out):
    if out is not None:
        _refuse(name, "out=")


def _unary(name, op_type):
    def build(x, name=None, *, out=None):
        _no_out(op_type, out)
        return _append(op_type, {"X": x})
    return build


def _round(x, decimals=0, name=None, *, out=None):
    _no_out("round", out)
    if decimals != 0:
        _refuse("round", "decimals={!r}".format(decimals))
    return _append("round", {"X": x})


def _elementwise(function_name, op_type):
    def build(x, y, name=None, *, out=None):
        _no_out(function_name, out)
        return _append(op_type, {"X": x, "Y": y}, {"axis": -1})
    return build


def _matmul(x, y, transpose_x=False, transpose_y=False, name=None, *, out=None):
    _no_out("matmul", out)
    return _append("matmul_v2", {"X": x, "Y": y}, {"trans_x": bool(transpose_x),
                                                   "trans_y": bool(transpose_y)})


def _reduce_axes(function_name, axis, rank):
    """(dims, reduce_all) as Paddle's reductions read `axis`: None or [] means every axis."""
    if axis is None:
        return [0], True
    dims = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    if not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
        _refuse(function_name, "axis={!r} (only ints, a list of ints or None)".format(axis))
    if not dims or (rank > 0 and len({d % rank for d in dims}) == rank):
        return dims or [0], True
    return dims, False


def _sum(x, axis=None, dtype=None, keepdim=False, name=None, *, out=None):
    from paddle.base import core

    _no_out("sum", out)
    dims, reduce_all = _reduce_axes("sum", axis, len(x.shape))
    attrs = {"dim": dims, "keep_dim": bool(keepdim), "reduce_all": reduce_all}
    int_types = (core.VarDesc.VarType.BOOL, core.VarDesc.VarType.INT32)
    if dtype is None and x.dtype in int_types:
        dtype = "int64"  # as Paddle's sum: bool and int32 sums are int64
    out_dtype = x.dtype
    if dtype is not None:
        out_dtype = _var_dtype(dtype)
        attrs.update(in_dtype=x.dtype, out_dtype=out_dtype)
    return _append("reduce_sum", {"X": x}, attrs, dtype=out_dtype)


def _arg(function_name, op_type):
    def build(x, axis=None, keepdim=False, dtype="int64", name=None):
        from paddle.base import core

        var_dtype = _var_dtype(dtype)
        if var_dtype not in (core.VarDesc.VarType.INT32, core.VarDesc.VarType.INT64):
            _refuse(function_name, "dtype={!r} (int32 or int64)".format(dtype))
        if axis is not None and not isinstance(axis, int):
            _refuse(function_name, "axis={!r}".format(axis))
        flatten = axis is None
        return _append(op_type, {"X": x}, {"axis": 0 if flatten else axis,
                                          "keepdims": bool(keepdim), "flatten": flatten,
                                          "dtype": var_dtype}, dtype=var_dtype)
    return build


def _greater_than(x, y, name=None, *, out=None):
    _no_out("greater_than", out)
    return _append("greater_than", {"X": x, "Y": y}, {"axis": -1}, dtype="bool")


def _gelu(x, approximate=False, name=None):
    modes = {False: False, True: True, "none": False, "tanh": True}
    if approximate not in modes:
        _refuse("nn.functional.gelu", "approximate={!r}".format(approximate))
    return _append("gelu", {"X": x}, {"approximate": modes[approximate]})


def _softplus(x, beta=1, threshold=20, name=None):
    return _append("softplus", {"X": x}, {"beta": float(beta), "threshold": float(threshold)})


GRID_SAMPLE_MODES = ("bilinear", "nearest")
GRID_SAMPLE_PADDING = ("zeros", "reflection", "border")


def _grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True,
                 name=None):
    """F.grid_sample (RT-DETR's deformable attention samples its values with it)."""
    from paddle.base.layer_helper import LayerHelper

    if mode not in GRID_SAMPLE_MODES:
        _refuse("nn.functional.grid_sample", "mode={!r}".format(mode))
    if padding_mode not in GRID_SAMPLE_PADDING:
        _refuse("nn.functional.grid_sample", "padding_mode={!r}".format(padding_mode))
    if not isinstance(align_corners, bool):
        _refuse("nn.functional.grid_sample", "align_corners={!r}".format(align_corners))
    helper = LayerHelper("grid_sample")
    out = helper.create_variable_for_type_inference(dtype=x.dtype)
    helper.append_op(type="grid_sampler", inputs={"X": [x], "Grid": [grid]},
                     outputs={"Output": [out]},
                     attrs={"mode": mode, "padding_mode": padding_mode,
                            "align_corners": align_corners, "use_cudnn": False})
    return out


UNARY = ("sigmoid", "tanh", "exp", "log", "sqrt", "rsqrt", "abs", "floor", "ceil", "sign",
         "sin", "cos", "log1p", "log2", "log10", "expm1")
ELEMENTWISE = {"multiply": "elementwise_mul", "maximum": "elementwise_max",
               "minimum": "elementwise_min"}


def old_ir_builders():
    """{function name: builder with the function's own parameters}."""
    builders = {name: _unary(name, name) for name in UNARY}
    builders.update({name: _elementwise(name, op) for name, op in ELEMENTWISE.items()})
    builders.update(round=_round, matmul=_matmul, sum=_sum,
                    argmax=_arg("argmax", "arg_max"), argmin=_arg("argmin", "arg_min"),
                    greater_than=_greater_than, gelu=_gelu, softplus=_softplus,
                    grid_sample=_grid_sample)
    return builders


def _dispatching(original, builder, qualname):
    signature = inspect.signature(builder)

    @functools.wraps(original)
    def function(*args, **kwargs):
        if not _in_old_ir_static_mode():
            return original(*args, **kwargs)
        unknown = sorted(set(kwargs) - set(signature.parameters))
        if unknown:
            raise OldIrArgumentError(
                "{}: keyword {!r} is not supported while tracing into the old IR (slimext's "
                "export); name the argument as in {}{}".format(
                    qualname, unknown[0], qualname, signature))
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as error:
            raise OldIrArgumentError("{}: {} (while tracing into the old IR for slimext's "
                                     "export)".format(qualname, error)) from None
        return builder(*bound.args, **bound.kwargs)

    function._old_ir_fallback = True
    return function


def stand_in(name, original, qualname=None):
    """The function that calls `original` outside old-IR static mode and the old-IR builder
    of `name` inside it (what `install_old_ir_fallbacks` puts in place)."""
    return _dispatching(original, old_ir_builders()[name], qualname or "paddle." + name)


def _bound_to_cpp(function):
    """A C++ builtin, or Paddle's generated Python shim that only forwards to one."""
    return type(function).__name__ == "builtin_function_or_method" or \
        "generated_tensor_methods_patch" in (getattr(function, "__module__", "") or "")


def _innermost(function):
    """(the wrapper whose `__wrapped__` is the function Paddle ships, that function).

    Other slimext wrappers (join interception) forward to their `__wrapped__` at call time
    and say so with `_slimext_forwards`; the stand-in goes beneath them, so they keep working
    during the trace.
    """
    holder = None
    while getattr(function, "_slimext_forwards", False):
        holder, function = function, function.__wrapped__
    return holder, function


def install_old_ir_fallbacks():
    """Put a stand-in under each C++-only function where models reach it (paddle,
    paddle.tensor, F, old-IR Variable methods); return the undo steps, newest first."""
    import paddle
    import paddle.nn.functional as F
    from paddle.static import Variable

    undo = []
    for name, builder in old_ir_builders().items():
        for owner in (paddle, paddle.tensor, F, Variable):
            current = owner.__dict__.get(name) if isinstance(owner, type) \
                else getattr(owner, name, None)
            if current is None:
                continue
            holder, original = _innermost(current)
            if getattr(original, "_old_ir_fallback", False):
                continue  # reached under another name already
            if owner is not Variable and not _bound_to_cpp(original):
                continue  # a Python implementation that builds old-IR ops itself
            qualname = "Variable." + name if owner is Variable else \
                "{}.{}".format(owner.__name__, name)
            replacement = _dispatching(original, builder, qualname)
            target, attribute = (holder, "__wrapped__") if holder is not None else (owner, name)
            setattr(target, attribute, replacement)
            undo.append((target, attribute, original))
    undo.extend(_stand_ins_beneath_forwarding_shims())
    undo.reverse()
    return undo


def _forwards_to_c_ops(function, name):
    """Paddle's generated shim `def _gelu(*args, **kwargs): return _C_ops.gelu(*args,
    **kwargs)`, or the `_C_ops` builtin itself: either way `_C_ops.<name>` takes the public
    function's own arguments."""
    from paddle import _C_ops

    return function is getattr(_C_ops, name, None) or (
        "generated_tensor_methods_patch" in (getattr(function, "__module__", "") or "")
        and getattr(function, "__name__", "") == "_" + name)


def _stand_ins_beneath_forwarding_shims():
    """A model may hold the function itself, taken before the export scope began
    (RT-DETR's `self.activation = getattr(F, 'gelu')`): the stand-in on `paddle.gelu` never
    sees that call. Paddle's shim looks `_C_ops.<name>` up at each call, so a stand-in there
    catches it; only shims forward there in old-IR static mode (Paddle's own functions call
    `_C_ops` in their dygraph / PIR branches, where the stand-in calls the original)."""
    import paddle
    import paddle.nn.functional as F
    from paddle import _C_ops

    undo = []
    for name in old_ir_builders():
        current = getattr(_C_ops, name, None)
        if current is None or getattr(current, "_old_ir_fallback", False):
            continue
        public = [_innermost(getattr(owner, name))[1] for owner in (paddle, F)
                  if getattr(owner, name, None) is not None]
        if not public or not all(_forwards_to_c_ops(f, name) or
                                 getattr(f, "_old_ir_fallback", False) for f in public):
            continue
        originals = [getattr(f, "__wrapped__", f) if getattr(f, "_old_ir_fallback", False)
                     else f for f in public]
        if not any(_forwards_to_c_ops(f, name) for f in originals):
            continue
        setattr(_C_ops, name, _dispatching(current, old_ir_builders()[name],
                                           "paddle._C_ops." + name))
        undo.append((_C_ops, name, current))
    return undo


def remove_old_ir_fallbacks(undo):
    """Put back what `install_old_ir_fallbacks` replaced."""
    for target, attribute, original in undo:
        current = getattr(target, attribute, None)
        if getattr(current, "_old_ir_fallback", False):
            setattr(target, attribute, original)
