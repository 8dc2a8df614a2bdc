"""Paddle 3.x: let the C++-only tensor functions build old-IR (ProgramDesc) programs again.

From Paddle 3.0 on, about sixty functions (`paddle.multiply`, `F.sigmoid`, `paddle.matmul`,
...) are bound straight to C++ and accept only dygraph tensors and PIR values. Tracing a
model into the old IR, which Paddle Inference's oneDNN INT8 passes still require, then
fails at the first of them (ppdet's LCNet: `paddle.multiply ... must be Value, but got
Variable`). Under old-IR static mode these wrappers append the op the old IR knows;
everywhere else they call Paddle's own function.
"""
import functools

# name -> (old-IR op type, argument names, attrs from arguments).
_UNARY = ("sigmoid", "tanh", "exp", "log", "sqrt", "rsqrt", "abs", "floor", "ceil", "sign",
          "sin", "cos", "log1p", "log2", "log10", "round", "expm1")
_ELEMENTWISE = {"multiply": "elementwise_mul", "maximum": "elementwise_max",
                "minimum": "elementwise_min"}


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


def _unary(op_type):
    return lambda x, name=None: _append(op_type, {"X": x})


def _elementwise(op_type):
    return lambda x, y, name=None: _append(op_type, {"X": x, "Y": y}, {"axis": -1})


def _matmul(x, y, transpose_x=False, transpose_y=False, name=None):
    return _append("matmul_v2", {"X": x, "Y": y}, {"trans_x": transpose_x,
                                                   "trans_y": transpose_y})


def _axes(axis):
    if axis is None:
        return [], True
    return (list(axis) if isinstance(axis, (list, tuple)) else [axis]), False


def _sum(x, axis=None, dtype=None, keepdim=False, name=None):
    dims, reduce_all = _axes(axis)
    return _append("reduce_sum", {"X": x}, {"dim": dims or [0], "keep_dim": keepdim,
                                           "reduce_all": reduce_all})


def _arg(op_type):
    def arg(x, axis=None, keepdim=False, dtype="int64", name=None):
        from paddle.base.framework import convert_np_dtype_to_dtype_

        flatten = axis is None
        return _append(op_type, {"X": x}, {"axis": 0 if flatten else axis, "keepdims": keepdim,
                                          "flatten": flatten,
                                          "dtype": convert_np_dtype_to_dtype_(dtype)},
                       dtype=dtype)
    return arg


def _greater_than(x, y, name=None):
    return _append("greater_than", {"X": x, "Y": y}, {"axis": -1}, dtype="bool")


def _gelu(x, approximate=False, name=None):
    return _append("gelu", {"X": x}, {"approximate": approximate})


def _softplus(x, beta=1, threshold=20, name=None):
    return _append("softplus", {"X": x}, {"beta": float(beta), "threshold": float(threshold)})


def _old_ir_builders():
    builders = {name: _unary(name) for name in _UNARY}
    builders.update({name: _elementwise(op) for name, op in _ELEMENTWISE.items()})
    builders.update(matmul=_matmul, sum=_sum, argmax=_arg("arg_max"), argmin=_arg("arg_min"),
                    greater_than=_greater_than, gelu=_gelu, softplus=_softplus)
    return builders


def _dispatching(original, old_ir_builder):
    @functools.wraps(original)
    def function(*args, **kwargs):
        if _in_old_ir_static_mode():
            return old_ir_builder(*args, **kwargs)
        return original(*args, **kwargs)

    function._old_ir_fallback = True
    return function


def install_old_ir_fallbacks():
    """Wrap each C++-only function where models reach it: paddle, paddle.tensor, F."""
    import paddle
    import paddle.nn.functional as F
    from paddle.static import Variable

    wrapped = []
    for name, builder in _old_ir_builders().items():
        for module in (paddle, paddle.tensor, F):
            original = getattr(module, name, None)
            if original is None or getattr(original, "_old_ir_fallback", False) \
                    or not _bound_to_cpp(original):
                continue  # absent, done, or a Python implementation that builds old-IR ops
            setattr(module, name, _dispatching(original, builder))
            wrapped.append("{}.{}".format(module.__name__, name))
        # Old-IR variables got these methods bound to the C++ functions too (x.sqrt()).
        method = getattr(Variable, name, None)
        if method is not None and not getattr(method, "_old_ir_fallback", False):
            setattr(Variable, name, _dispatching(method, builder))
            wrapped.append("Variable." + name)
    return wrapped


def _bound_to_cpp(function):
    """A C++ builtin, or Paddle's generated Python shim that only forwards to one."""
    return type(function).__name__ == "builtin_function_or_method" or \
        "generated_tensor_methods_patch" in (getattr(function, "__module__", "") or "")
