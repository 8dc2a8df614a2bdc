"""The old-IR stand-ins used while an export is traced (Paddle 3) are exact: Paddle's own
parameters, Paddle's results on every argument they accept, and a clear refusal, naming the
function, of any argument they cannot build."""
import inspect

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from slimext.compat.legacy_static_ops import OldIrArgumentError, old_ir_builders, stand_in
from slimext.compat.tracing import export_tracing
from slimext.compat.versions import paddle_at_least

# The stand-ins are installed on Paddle 3 only; on Paddle 2.6, whose functions build old-IR
# ops themselves, the same sweep checks Paddle's own functions inside the export scope.
PADDLE3 = paddle_at_least(3, 0, 0)
OWNERS = (paddle, paddle.tensor, F)


def _paddle_functions():
    """(qualname, owner, name) for each function a stand-in exists for, where Paddle has it."""
    for name in sorted(old_ir_builders()):
        for owner in OWNERS:
            if getattr(owner, name, None) is not None:
                yield "{}.{}".format(owner.__name__, name), owner, name


def _parameters(function):
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def _beneath_slimext_wrappers(function):
    # Join interception wrappers forward to their `__wrapped__` and say so (interception.py).
    while getattr(function, "_slimext_forwards", False):
        function = function.__wrapped__
    return function


@pytest.mark.parametrize("qualname,owner,name", list(_paddle_functions()),
                         ids=[q for q, _, _ in _paddle_functions()])
def test_each_stand_in_takes_exactly_paddles_parameters(qualname, owner, name):
    before = getattr(owner, name)
    with export_tracing():
        stand_in_used = getattr(_beneath_slimext_wrappers(getattr(owner, name)),
                                "_old_ir_fallback", False)
    assert getattr(owner, name) is before  # the scope leaves every attribute as it found it
    assert not getattr(_beneath_slimext_wrappers(before), "_old_ir_fallback", False)
    if PADDLE3:
        paddle_function = _beneath_slimext_wrappers(before)
        assert _parameters(old_ir_builders()[name]) == _parameters(paddle_function), qualname
        assert stand_in_used
    else:
        assert not stand_in_used  # Paddle 2.6 builds old-IR ops itself: nothing replaced


X = np.array([[[0.5, 1.5, 2.0, 0.7], [1.2, 0.9, 1.9, 0.6], [1.1, 1.7, 0.8, 1.4]],
              [[1.3, 0.55, 1.6, 1.8], [0.65, 1.05, 1.25, 0.95], [1.45, 0.75, 1.15, 1.85]]],
             "float32")  # [2, 3, 4], positive (log, sqrt), no ties (argmax)
Y = (X[::-1] * 0.9 + 0.1).copy()
ROW = np.array([0.8, 1.2, 1.0, 0.9], "float32")
INTS = np.arange(24, dtype="int32").reshape(2, 3, 4) - 7
FLAGS = INTS % 3 == 0
# Sampling places for X[None] ([1, 2, 3, 4]): inside, on the border and outside [-1, 1].
GRID = np.array([[[[-1.2, -0.9], [-0.3, 0.1], [0.45, -0.65], [1.0, 1.0], [0.8, 1.3]],
                  [[0.05, 0.7], [-0.75, 0.35], [0.6, 0.2], [-1.0, 0.0], [1.15, -0.4]]]],
                "float32")  # [1, 2, 5, 2]

GELU_MODES = (False, True, "tanh", "none") if PADDLE3 else (False, True)  # strings: Paddle 3

# (function name, inputs, keyword arguments): every argument each stand-in accepts.
CASES = (
    [(name, [X], {}) for name in ("sigmoid", "tanh", "exp", "log", "sqrt", "rsqrt", "abs",
                                  "floor", "ceil", "sign", "sin", "cos", "log1p", "log2",
                                  "log10", "expm1", "round")]
    + [(name, inputs, {}) for name in ("multiply", "maximum", "minimum", "greater_than")
       for inputs in ([X, Y], [X, ROW])]
    + [("matmul", [X, Y], {"transpose_y": True}), ("matmul", [X, Y], {"transpose_x": True}),
       ("matmul", [X[0], Y[0].T], {}), ("matmul", [X[0].T, Y[0]],
                                        {"transpose_x": True, "transpose_y": True})]
    + [("sum", [data], {"axis": axis, "keepdim": keepdim, "dtype": dtype})
       for data in (X, INTS)
       for axis in (None, 0, -1, 2, [0, 2], (1,), [], [0, 1, 2], [-1, 0])
       for keepdim in (False, True)
       for dtype in (None, "float64", "int64")]
    + [("sum", [FLAGS], {}), ("sum", [FLAGS], {"axis": 1})]
    + [(name, [data], {"axis": axis, "keepdim": keepdim, "dtype": dtype})
       for name in ("argmax", "argmin") for data in (X, INTS)
       for axis in (None, 0, 1, -1) for keepdim in (False, True)
       for dtype in ("int64", "int32")]
    + [("gelu", [X - 1], {"approximate": mode}) for mode in GELU_MODES]
    + [("softplus", [X * 10 - 8], {"beta": beta, "threshold": threshold})
       for beta in (1, 2, 0.5) for threshold in (20, 1, 3.0)]
    + [("grid_sample", [X[None], GRID], {"mode": mode, "padding_mode": padding,
                                         "align_corners": corners})
       for mode in ("bilinear", "nearest") for padding in ("zeros", "reflection", "border")
       for corners in (False, True)]
    + [("grid_sample", [X[None], GRID], {})]
)


def _paddle_function(name):
    if name in ("gelu", "softplus") or not hasattr(paddle, name):  # Paddle 2.6: F.sigmoid
        return getattr(F, name)
    return getattr(paddle, name)


def _old_ir(name, inputs, kwargs):
    with export_tracing():
        function = _paddle_function(name)
        paddle.enable_static()
        try:
            main, startup = paddle.static.Program(), paddle.static.Program()
            with paddle.static.program_guard(main, startup):
                feeds = [paddle.static.data("in{}".format(i), list(a.shape), str(a.dtype))
                         for i, a in enumerate(inputs)]
                out = function(*feeds, **kwargs)
            exe = paddle.static.Executor(paddle.CPUPlace())
            result, = exe.run(main, feed={"in{}".format(i): a for i, a in enumerate(inputs)},
                              fetch_list=[out])
        finally:
            paddle.disable_static()
    return np.asarray(result)


def _case_id(case):
    name, inputs, kwargs = case
    shapes = "x".join(str(list(a.shape)) + str(a.dtype) for a in inputs)
    return "{}-{}-{}".format(name, shapes, kwargs)


@pytest.mark.parametrize("name,inputs,kwargs", CASES, ids=[_case_id(c) for c in CASES])
def test_each_stand_in_computes_what_paddle_computes(name, inputs, kwargs):
    expected = _paddle_function(name)(*[paddle.to_tensor(a) for a in inputs], **kwargs).numpy()
    got = _old_ir(name, inputs, kwargs)
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name,inputs,kwargs,what", [
    ("round", [X], {"decimals": 1}, "decimals"),
    ("sum", [X], {"axis": 1.5}, "axis"),
    ("argmax", [X], {"dtype": "float32"}, "dtype"),
    ("gelu", [X], {"approximate": "erf"}, "approximate"),
    ("sum", [X], {"input": "x"}, "input"),
    ("grid_sample", [X[None], GRID], {"mode": "bicubic"}, "mode"),
])
def test_an_argument_a_stand_in_cannot_build_is_refused_with_the_function_named(
        name, inputs, kwargs, what):
    if "input" in kwargs:  # an alias only Paddle's C++ argument parser knows
        kwargs = {}
        build = lambda f, xs: f(input=xs[0])  # noqa: E731
    else:
        build = lambda f, xs: f(*xs, **kwargs)  # noqa: E731
    with export_tracing():
        function = stand_in(name, _paddle_function(name))
        paddle.enable_static()
        try:
            with paddle.static.program_guard(paddle.static.Program()):
                xs = [paddle.static.data("x{}".format(i), list(a.shape), "float32")
                      for i, a in enumerate(inputs)]
                with pytest.raises(OldIrArgumentError, match=r"paddle\..*{}.*".format(name)) \
                        as error:
                    build(function, xs)
        finally:
            paddle.disable_static()
    assert what in str(error.value)


def test_an_out_tensor_is_refused_rather_than_left_unwritten():
    with export_tracing():
        total = stand_in("sum", paddle.sum)
        paddle.enable_static()
        try:
            with paddle.static.program_guard(paddle.static.Program()):
                x = paddle.static.data("x", [2, 3], "float32")
                with pytest.raises(OldIrArgumentError, match=r"paddle\.sum: out="):
                    total(x, out=x)
        finally:
            paddle.disable_static()


class Reductions(paddle.nn.Layer):
    """A forward written with the C++-bound functions the stand-ins replace."""

    def __init__(self):
        super().__init__()
        self.scale = self.create_parameter(
            [4], default_initializer=paddle.nn.initializer.Constant(1.5))

    def forward(self, x):
        x = x * self.scale
        gated = paddle.multiply(x, F.sigmoid(x))
        return (paddle.sum(x), paddle.sum(x, axis=0, dtype="float64"),
                paddle.argmax(x, axis=-1, keepdim=True), gated.sum(axis=[1, 2]),
                paddle.matmul(x, x, transpose_y=True), F.gelu(x, approximate=True))


def _run_in_paddle_inference(prefix, x):
    """Every output of the saved program at prefix, run by Paddle Inference on x."""
    from paddle import inference

    from slimext.compat.inference import use_int8_capable_pipeline

    config = inference.Config(prefix + ".pdmodel", prefix + ".pdiparams")
    config.disable_gpu()
    use_int8_capable_pipeline(config)
    predictor = inference.create_predictor(config)
    predictor.get_input_handle(predictor.get_input_names()[0]).copy_from_cpu(x)
    predictor.run()
    return [predictor.get_output_handle(name).copy_to_cpu()
            for name in predictor.get_output_names()]


def test_an_export_computes_what_the_model_computes(tmp_path):
    model = Reductions()
    spec = [paddle.static.InputSpec([2, 3, 4], "float32", "x")]
    expected = [t.numpy() for t in model(paddle.to_tensor(X))]
    prefix = str(tmp_path / "model")
    with export_tracing():
        paddle.jit.save(paddle.jit.to_static(model, input_spec=spec, full_graph=True), prefix)
    got = _run_in_paddle_inference(prefix, X)
    assert [g.shape for g in got] == [e.shape for e in expected]
    assert [g.dtype for g in got] == [e.dtype for e in expected]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


class DeformableSampling(paddle.nn.Layer):
    """Values sampled at predicted places, as RT-DETR's deformable attention does:
    F.grid_sample of a feature map at a grid a layer computes from it; the activation is
    taken from F when the layer is built (RT-DETR's `getattr(F, activation)`), before any
    export scope begins."""

    def __init__(self):
        super().__init__()
        self.value = paddle.nn.Conv2D(3, 4, 1)
        self.offsets = paddle.nn.Linear(3, 2 * 5)
        self.activation = getattr(F, "gelu")

    def forward(self, x):
        grid = F.tanh(self.offsets(x.mean(axis=[2, 3]))).reshape([-1, 1, 5, 2]) * 1.1
        return self.activation(F.grid_sample(self.value(x), grid, mode="bilinear",
                                             padding_mode="zeros", align_corners=False))


def test_an_export_with_grid_sample_and_an_early_bound_gelu_computes_what_the_model_computes(
        tmp_path):
    paddle.seed(0)
    model = DeformableSampling()
    model.eval()
    image = np.random.RandomState(0).rand(2, 3, 6, 7).astype("float32")
    expected = model(paddle.to_tensor(image)).numpy()
    prefix = str(tmp_path / "model")
    spec = [paddle.static.InputSpec([2, 3, 6, 7], "float32", "x")]
    with export_tracing():
        paddle.jit.save(paddle.jit.to_static(model, input_spec=spec, full_graph=True), prefix)
    got, = _run_in_paddle_inference(prefix, image)
    assert got.shape == expected.shape == (2, 4, 1, 5)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    from paddle import _C_ops
    assert not getattr(_C_ops.gelu, "_old_ir_fallback", False)   # put back after the scope
