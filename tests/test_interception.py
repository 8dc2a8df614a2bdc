"""Join interception: off after every forward, per thread, every join form found or reported."""
import logging
import threading

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from quant_models import Attention, ResidualNet, example_input, tokens_input, train_steps
from slimext.quant import QATQuantizer, interception
from slimext.quant.coverage import JoinCoverageError
from slimext.quant.joins import trace_joins


class RaisesInForward(nn.Layer):
    """A residual model whose forward raises after its first join when asked to."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2D(3, 3, 3, padding=1)
        self.out = nn.Conv2D(3, 2, 1)
        self.fail = False

    def forward(self, x):
        y = self.conv(x) + x
        if self.fail:
            raise RuntimeError("data error in the middle of a forward")
        return self.out(y)


class PlainAdd(nn.Layer):
    """A float model with one residual add: what interception must leave alone."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2D(3, 3, 3, padding=1)

    def forward(self, x):
        return self.conv(x) + x


def test_a_forward_that_raises_leaves_no_handler_active():
    paddle.seed(0)
    model = RaisesInForward()
    qat = QATQuantizer()
    model = qat(model, example_inputs=[example_input()])
    model.fail = True
    with pytest.raises(RuntimeError, match="data error"):
        model(example_input())
    assert interception.active_handler() is None

    # A float model run afterwards computes exactly what it computes without slimext.
    paddle.seed(1)
    plain = PlainAdd()
    x = example_input()
    expected = (plain.conv(x).numpy() + x.numpy())
    np.testing.assert_array_equal(plain(x).numpy(), expected)

    # The quantized model itself recovers: the next forward uses its quantizers again.
    model.fail = False
    before = qat.quantizer("<model>:add#0/out")._scale.numpy().copy()
    model.train()
    model(example_input())
    assert not np.array_equal(before, qat.quantizer("<model>:add#0/out")._scale.numpy())


def _quantized(seed):
    paddle.seed(seed)
    qat = QATQuantizer()
    model = qat(ResidualNet(), example_inputs=[example_input()])
    return qat, train_steps(model, steps=2)


def _inputs(seed, repeats=6):
    # Made before any thread starts: Paddle's random generator is one per process.
    paddle.seed(seed)
    return [paddle.randn([2, 3, 32, 32]) for _ in range(repeats)]


def _run(model, inputs):
    return [model(x).numpy() for x in inputs]


def test_two_threads_running_two_models_match_running_them_one_after_the_other():
    (_, first), (_, second) = _quantized(0), _quantized(1)
    inputs = {"a": _inputs(10), "b": _inputs(11)}
    sequential = {"a": _run(first, inputs["a"]), "b": _run(second, inputs["b"])}
    # Fresh copies of the same two models, quantized and run at once in two threads.
    (_, first), (_, second) = _quantized(0), _quantized(1)
    results, errors = {}, []
    start = threading.Barrier(2)

    def work(key, model):
        try:
            start.wait()
            results[key] = _run(model, inputs[key])
        except Exception as error:  # reported below: a thread's exception is not raised
            errors.append(error)

    threads = [threading.Thread(target=work, args=("a", first)),
               threading.Thread(target=work, args=("b", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for key in ("a", "b"):
        for got, want in zip(results[key], sequential[key]):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_quantizing_in_a_thread_does_not_leak_into_the_main_thread():
    seen = {}

    def quantize():
        qat, model = _quantized(0)
        seen["handler"] = qat.handler
        seen["active_inside"] = interception.active_handler()

    thread = threading.Thread(target=quantize)
    thread.start()
    thread.join()
    assert seen["active_inside"] is None and interception.active_handler() is None


class EveryJoinForm(nn.Layer):
    """One join per form interception patches, each before a conv so it is worth quantizing."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2D(4, 4, 1)
        self.b = nn.Conv2D(4, 4, 1)
        self.stem = nn.Conv2D(3, 4, 1)
        self.fuse = nn.Conv2D(8, 4, 1)
        self.stacked = nn.Conv2D(4, 4, 1)
        self.out = nn.Conv2D(4, 2, 1)

    def forward(self, x):
        x = self.stem(x)
        a, b = self.a(x), self.b(x)
        y = a + b                                   # __add__
        y = y - a                                   # __sub__
        y = y.add(b)                                # Tensor.add
        y = y.subtract(a)                           # Tensor.subtract
        y = paddle.add(y, a)                        # paddle.add
        y = paddle.tensor.math.add(y, b)            # paddle.tensor.math.add
        y = paddle.subtract(y, b)                   # paddle.subtract
        y = paddle.add_n([y, a, b])                 # paddle.add_n
        z = paddle.concat([y, a], axis=1)           # paddle.concat
        s = paddle.stack([self.fuse(z), b], axis=0).mean(axis=0)   # paddle.stack
        return self.out(self.stacked(s))


EXPECTED_FORMS = ["<model>:add#0", "<model>:subtract#0", "<model>:add#1",
                  "<model>:subtract#1", "<model>:add#2", "<model>:add#3",
                  "<model>:subtract#2", "<model>:add#4", "<model>:concat#0",
                  "<model>:stack#0"]


def test_every_patched_join_form_is_found():
    model = EveryJoinForm()
    model.eval()
    discovery = trace_joins(model, [example_input()])
    assert [j.site for j in discovery.joins] == EXPECTED_FORMS
    add_n = discovery.joins[7]
    assert len(add_n.operands) == 3
    assert discovery.unquantizable == []


def test_every_found_form_gets_its_quantizers_and_stack_is_placed_like_concat():
    qat = QATQuantizer(backend="onednn")
    qat(EveryJoinForm(), example_inputs=[example_input()])
    active = {j.site: j for j in qat.plan.active_joins()}
    assert sorted(active) == sorted(EXPECTED_FORMS)
    assert active["<model>:stack#0"].output == "<model>:stack#0/shared"
    assert sorted(active["<model>:add#4"].inputs) == [0, 1, 2]
    assert qat.uncovered == []


class InPlaceJoin(nn.Layer):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2D(3, 3, 1)
        self.out = nn.Conv2D(3, 2, 1)

    def forward(self, x):
        y = self.a(x)
        y.add_(x)                       # in-place: cannot take quantizers
        return self.out(y)


class UnpatchedJoin(nn.Layer):
    """A join through a function bound before interception patched Paddle."""

    def __init__(self):
        super().__init__()
        interception.install()
        self.add_bound_early = paddle.add.__wrapped__
        self.a = nn.Conv2D(3, 3, 1)
        self.out = nn.Conv2D(3, 2, 1)

    def forward(self, x):
        return self.out(self.add_bound_early(self.a(x), x))


@pytest.fixture
def qat_warnings():
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    loggers = [logging.getLogger("slimext.qat"), logging.getLogger("slimext.coverage")]
    for logger in loggers:
        logger.addHandler(handler)
    yield records
    for logger in loggers:
        logger.removeHandler(handler)


def test_an_in_place_join_is_reported_with_its_line_and_the_fix(qat_warnings):
    qat = QATQuantizer()
    qat(InPlaceJoin(), example_inputs=[example_input()])
    assert qat.plan.active_joins() == []
    message = " ".join(r.getMessage() for r in qat_warnings if r.levelno == logging.WARNING)
    assert "add_" in message and "test_interception.py" in message
    assert "x = x + y" in message
    with pytest.raises(JoinCoverageError, match="add_"):
        QATQuantizer(strict=True)(InPlaceJoin(), example_inputs=[example_input()])


def test_a_join_interception_never_saw_is_reported_from_the_traced_program(qat_warnings):
    qat = QATQuantizer()
    qat(UnpatchedJoin(), example_inputs=[example_input()])
    assert qat.plan.joins == []                 # invisible to interception ...
    assert len(qat.uncovered) == 1              # ... but found in the program
    assert qat.uncovered[0].startswith("add (")   # elementwise_add (2.6) or pd_op.add (PIR)
    assert "test_interception.py" in qat.uncovered[0]
    assert any("not intercepted" in r.getMessage() for r in qat_warnings)
    with pytest.raises(JoinCoverageError, match="not intercepted"):
        QATQuantizer(strict=True)(UnpatchedJoin(), example_inputs=[example_input()])


def test_the_export_validator_reports_it_again_and_strict_refuses_the_export(tmp_path):
    from slimext.quant.validate import ExportValidationError

    spec = [paddle.static.InputSpec([1, 3, 32, 32], "float32", "x")]
    qat = QATQuantizer()
    model = train_steps(qat(UnpatchedJoin(), example_inputs=[example_input()]), steps=1)
    report = qat.save_quantized_model(model, str(tmp_path / "loose" / "model"), input_spec=spec)
    assert len(report["uncovered_joins"]) == 1
    strict = QATQuantizer()
    model = train_steps(strict(UnpatchedJoin(), example_inputs=[example_input()]), steps=1)
    strict.strict = True  # as if set after quantizing: the export checks on its own
    with pytest.raises(ExportValidationError, match="not intercepted"):
        strict.save_quantized_model(model, str(tmp_path / "strict" / "model"), input_spec=spec)
    assert not (tmp_path / "strict" / "model.pdmodel").exists()


def test_a_covered_model_exports_with_no_uncovered_join(tmp_path):
    spec = [paddle.static.InputSpec([1, 3, 32, 32], "float32", "x")]
    qat = QATQuantizer()
    model = qat(EveryJoinForm(), example_inputs=[example_input()])
    train_steps(model, steps=2)
    report = qat.save_quantized_model(model, str(tmp_path / "model"), input_spec=spec)
    assert report["uncovered_joins"] == []
    assert report["join_quantizers"] == len(qat.plan.quantizers)


def test_an_intercepted_matmul_passes_its_transpose_arguments_through():
    from slimext.quant.coverage import CoverageRecorder

    model = Attention()
    model.eval()
    x = tokens_input()
    expected = model(x).numpy()
    recorder = CoverageRecorder()
    with interception.handling(recorder):
        got = model(x).numpy()
    assert len(recorder.seen_outputs) == 2   # both matmuls went through the handler
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_a_matmul_written_with_the_at_operator_is_reported_by_the_coverage_check(qat_warnings):
    qat = QATQuantizer()
    qat(Attention(at_operator=True), example_inputs=[tokens_input()])
    assert [j.site for j in qat.joins] == ["<model>:matmul#0"]   # only paddle.matmul seen
    assert len(qat.uncovered) == 1 and "matmul" in qat.uncovered[0], qat.uncovered


def test_the_patch_table_names_every_replaced_entry_point():
    names = set(interception.patched_entry_points())
    for expected in ("paddle.add", "paddle.tensor.math.add", "paddle.Tensor.add",
                     "paddle.Tensor.__add__", "paddle.Tensor.__rsub__", "paddle.add_n",
                     "paddle.stack", "paddle.concat", "paddle.Tensor.add_", "paddle.matmul",
                     "paddle.Tensor.matmul",
                     "paddle.nn.layer.layers.Layer.__call__"):
        assert expected in names


def test_a_deep_copy_of_a_quantized_model_uses_its_own_quantizers():
    import copy

    qat, model = _quantized(0)
    clone = copy.deepcopy(model)  # as ppdet's SimpleModelEMA does
    x = example_input()
    np.testing.assert_array_equal(model(x).numpy(), clone(x).numpy())
    original = qat.quantizer("blocks.0:add#0/out")._scale.numpy().copy()
    clone.train()
    clone(example_input(batch=2))
    np.testing.assert_array_equal(qat.quantizer("blocks.0:add#0/out")._scale.numpy(), original)
    assert not np.array_equal(
        clone.slimext_join_quantizers["blocks_0_add_0_out"]._scale.numpy(), original)


def test_the_coverage_trace_gives_every_layer_its_own_forward_back():
    # to_static swaps in converted forwards; training afterwards must run the originals.
    model = QATQuantizer()(ResidualNet(), example_inputs=[example_input()])
    assert [path for path, layer in [("", model)] + list(model.named_sublayers())
            if "forward" in layer.__dict__] == []


class RemembersItsInputs(ResidualNet):
    """Stores what its forward saw on the layer, as ppdet's BaseArch does (self.inputs)."""

    def __init__(self):
        super().__init__()
        self.inputs = {}

    def forward(self, x):
        self.inputs["image"] = x
        self.last_output = super().forward(x)
        return self.last_output


def test_the_coverage_trace_leaves_no_static_variable_on_the_model():
    import copy

    model = RemembersItsInputs()
    inputs = model.inputs
    model = QATQuantizer()(model, example_inputs=[example_input()])
    assert model.inputs is inputs
    # What the dygraph discovery forward stored stays; nothing the trace stored does.
    assert isinstance(model.inputs["image"], paddle.Tensor)
    assert isinstance(model.last_output, paddle.Tensor)
    copy.deepcopy(model)  # ppdet's export deep-copies the model (develop's Trainer.export)
