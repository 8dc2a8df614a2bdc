"""The join error monitor: exact SQNR / relative MSE, sampling, reports, flags, config errors."""
import csv
import json
import logging
import os
import sys

import numpy as np
import paddle
import pytest

from conftest import DEMO_CONFIG, REPO_ROOT, run_tool, run_tool_ok
from quant_models import MixedJoins, ResidualNet, example_input, train_steps
from slimext.analysis.monitor import JoinErrorMonitor, MonitorConfigError, monitor_from_config
from slimext.quant import QATQuantizer
from slimext.quant.quantizers import layer_quantizers

BAD_JOIN = "blocks.1:add#0"
BAD_QUANTIZERS = {BAD_JOIN + "/in0", BAD_JOIN + "/in1", BAD_JOIN + "/out"}


MONITORS = []  # detached after each test, so no report is due when pytest exits


def quantized(model_class, monitor=None, rules=None):
    """A freshly initialised (seed 0) model under ResidualQAT with the given monitor."""
    paddle.seed(0)
    model = model_class()
    qat = QATQuantizer(monitor=monitor_from_config(monitor), rules=rules)
    model = qat(model, example_inputs=[example_input()])
    if qat.monitor is not None:
        MONITORS.append(qat.monitor)
    return qat, model


@pytest.fixture(autouse=True)
def detach_monitors():
    yield
    while MONITORS:
        MONITORS.pop().detach()


def train_forward(model, seed=0):
    model.train()
    paddle.seed(seed)
    return model(paddle.randn([2, 3, 32, 32]))


@pytest.fixture
def monitor_log():
    """Records of the monitor's ppdet logger (it does not propagate to the root logger)."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("slimext.analysis.monitor")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def numpy_error(pairs):
    """SQNR dB and relative MSE over (x, q) pairs, as the definitions say."""
    signal = sum(float(np.sum(x.astype(np.float64) ** 2)) for x, _ in pairs)
    noise = sum(float(np.sum((x.astype(np.float64) - q) ** 2)) for x, q in pairs)
    return 10 * np.log10(signal / noise), noise / signal


def test_values_equal_numpy_on_the_tensors_each_quantizer_saw(tmp_path):
    qat, model = quantized(MixedJoins, {"every_n_steps": 1, "layers": True,
                                          "output_dir": str(tmp_path)})
    watched = {"<model>:concat#0/shared": qat.quantizer("<model>:concat#0/shared"),  # 3 calls
               "inner:add#0/in1": qat.quantizer("inner:add#0/in1"),
               "fuse/input": layer_quantizers(model)["fuse/input"]}
    seen = {name: [] for name in watched}

    def recorder(name):
        def hook(_layer, inputs, output):
            seen[name].append((inputs[0].numpy(), output.numpy()))
        return hook

    hooks = [layer.register_forward_post_hook(recorder(n)) for n, layer in watched.items()]
    train_forward(model)
    for hook in hooks:
        hook.remove()

    got = {s.quantizer: s for s in qat.monitor.samples if s.step == 1}
    assert len(seen["<model>:concat#0/shared"]) == 3
    for name, pairs in seen.items():
        sqnr, rel_mse = numpy_error(pairs)
        assert got[name].sqnr_db == pytest.approx(sqnr, abs=1e-3), name
        assert got[name].rel_mse == pytest.approx(rel_mse, rel=1e-4), name
        assert 0 < rel_mse < 1


def test_monitoring_does_not_change_what_the_model_computes(tmp_path):
    _, plain = quantized(MixedJoins)
    _, monitored = quantized(MixedJoins, {"every_n_steps": 1, "layers": True,
                                            "output_dir": str(tmp_path)})
    for seed in range(2):
        expected = train_forward(plain, seed).numpy()
        assert np.array_equal(train_forward(monitored, seed).numpy(), expected)


def test_samples_every_n_training_steps_and_never_in_eval(tmp_path):
    qat, model = quantized(ResidualNet, {"every_n_steps": 3, "output_dir": str(tmp_path)})
    for step in range(7):
        train_forward(model, step)
        model.eval()
        model(example_input())  # eval calls in between: not steps, not sampled
    assert qat.monitor.step == 7
    assert sorted({s.step for s in qat.monitor.samples}) == [1, 4, 7]
    assert {s.quantizer for s in qat.monitor.samples} == set(qat.plan.quantizers)


def test_disabled_monitor_attaches_nothing():
    _, reference = quantized(ResidualNet, {"every_n_steps": 1, "layers": True,
                                           "output_dir": "unused"})
    monitored_inputs = {n: len(q._forward_post_hooks)
                        for n, q in layer_quantizers(reference).items() if n.endswith("/input")}
    for setting in (None, False):
        qat, model = quantized(ResidualNet, setting)
        assert qat.monitor is None and qat.handler.observers == []
        # The monitor's hooks are one pre and one post hook on the model, one post hook on
        # each conv/linear input quantizer; without it all of them are absent.
        assert len(model._forward_pre_hooks) == len(reference._forward_pre_hooks) - 1
        assert len(model._forward_post_hooks) == len(reference._forward_post_hooks) - 1
        plain_inputs = {n: len(q._forward_post_hooks)
                        for n, q in layer_quantizers(model).items() if n.endswith("/input")}
        assert plain_inputs == {n: count - 1 for n, count in monitored_inputs.items()}


def test_detach_removes_the_hooks_and_keeps_the_samples(tmp_path):
    qat, model = quantized(ResidualNet, {"every_n_steps": 1, "output_dir": str(tmp_path)})
    hooks_before = len(model._forward_pre_hooks)
    train_forward(model)
    qat.monitor.detach()
    train_forward(model)
    assert qat.handler.observers == []
    assert len(model._forward_pre_hooks) == hooks_before - 1
    assert {s.step for s in qat.monitor.samples} == {1}


@pytest.fixture(scope="module")
def two_bit_report(tmp_path_factory):
    """ResidualNet trained 24 steps with one join forced to 2 bits, report finalized."""
    out = str(tmp_path_factory.mktemp("report"))
    qat, model = quantized(ResidualNet, {"every_n_steps": 4, "recent_samples": 3,
                                           "output_dir": out},
                           rules=[{"match": BAD_JOIN, "activation_bits": 2}])
    train_steps(model, steps=24)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("slimext.analysis.monitor").addHandler(handler)
    try:
        paths = qat.finalize()
    finally:
        logging.getLogger("slimext.analysis.monitor").removeHandler(handler)
    return qat, paths, [r.getMessage() for r in records if r.levelno == logging.WARNING]


def test_report_files_hold_every_sample(two_bit_report):
    qat, paths, _ = two_bit_report
    assert sorted(os.listdir(os.path.dirname(paths["csv"]))) == sorted(
        os.path.basename(p) for p in paths.values())  # no staging files left behind
    with open(paths["csv"]) as stream:
        rows = list(csv.DictReader(stream))
    assert [(int(r["step"]), r["quantizer"]) for r in rows] == \
        [(s.step, s.quantizer) for s in qat.monitor.samples]
    assert sorted({int(r["step"]) for r in rows}) == [1, 5, 9, 13, 17, 21]
    with open(paths["json"]) as stream:
        report = json.load(stream)
    last = {r["quantizer"]: float(r["sqnr_db"]) for r in rows}
    for name, numbers in report["quantizers"].items():
        assert numbers["samples"] == 6
        assert numbers["last_sqnr_db"] == pytest.approx(last[name], abs=1e-3)
        assert numbers["min_sqnr_db"] <= numbers["mean_sqnr_db"] <= max(
            float(r["sqnr_db"]) for r in rows if r["quantizer"] == name)
    with open(paths["png"], "rb") as stream:
        png = stream.read()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10000


def test_two_bit_join_is_flagged_and_eight_bit_joins_are_not(two_bit_report):
    qat, paths, warnings = two_bit_report
    with open(paths["json"]) as stream:
        report = json.load(stream)
    assert set(report["flagged"]) == BAD_QUANTIZERS
    good = [n for n in qat.plan.quantizers if n not in BAD_QUANTIZERS]
    assert good and all(report["quantizers"][n]["recent_max_sqnr_db"] > 30 for n in good)
    assert all(report["quantizers"][n]["recent_max_sqnr_db"] < 10 for n in BAD_QUANTIZERS)
    assert len(warnings) == 1 and all(n in warnings[0] for n in BAD_QUANTIZERS)
    assert qat.monitor.summary()[BAD_JOIN + "/in0"]["flagged"] is True


def test_one_compact_log_line_per_sampled_step(tmp_path, monitor_log):
    qat, model = quantized(ResidualNet, {"every_n_steps": 2, "log_worst": 2,
                                           "output_dir": str(tmp_path)})
    for step in range(4):
        train_forward(model, step)
    lines = [r.getMessage() for r in monitor_log]
    assert [line.split(":")[0] for line in lines] == ["join monitor step 1", "join monitor step 3"]
    assert all(line.count(" dB,") == 1 and "6 quantizers" in line for line in lines)


def test_visualdl_scalars_when_a_log_dir_is_set(tmp_path):
    vdl_dir = tmp_path / "vdl"
    qat, model = quantized(ResidualNet, {"every_n_steps": 1, "vdl_log_dir": str(vdl_dir),
                                           "output_dir": str(tmp_path / "report")})
    train_forward(model)
    qat.finalize()
    records = [f for f in os.listdir(vdl_dir) if f.startswith("vdlrecords")]
    assert records and os.path.getsize(vdl_dir / records[0]) > 0


def test_missing_visualdl_is_said_once(tmp_path, monitor_log, monkeypatch):
    monkeypatch.setitem(sys.modules, "visualdl", None)  # makes `import visualdl` fail
    qat, model = quantized(ResidualNet, {"every_n_steps": 1, "vdl_log_dir": str(tmp_path)})
    qat.monitor.default_output_dir = str(tmp_path / "report")
    for step in range(3):
        train_forward(model, step)
    said = [r.getMessage() for r in monitor_log if "visualdl" in r.getMessage()]
    assert len(said) == 1 and "pip install visualdl" in said[0]
    assert len(qat.monitor.samples) == 3 * len(qat.plan.quantizers)  # monitoring goes on


@pytest.mark.parametrize("setting, words", [
    ({"every_n_step": 5}, ["every_n_step", "valid keys are every_n_steps, threshold_db"]),
    ({"every_n_steps": 0}, ["every_n_steps", "integer >= 1"]),
    ({"threshold_db": "high"}, ["threshold_db", "number"]),
    ({"layers": "yes"}, ["layers", "true or false"]),
    ({"output_dir": ""}, ["output_dir", "directory path"]),
    ("every 20 steps", ["mapping"]),
])
def test_bad_settings_fail_before_any_model_work(setting, words):
    with pytest.raises(MonitorConfigError) as error:
        monitor_from_config(setting)
    for word in words:
        assert word in str(error.value)


def test_true_means_defaults_and_python_api_matches_yaml_keys():
    assert monitor_from_config(True).config.every_n_steps == 20
    monitor = JoinErrorMonitor(every_n_steps=5, threshold_db=25.0)
    assert QATQuantizer(monitor=monitor).monitor is monitor
    with pytest.raises(TypeError, match="monitor_from_config"):
        QATQuantizer(monitor={"every_n_steps": 5})  # the core takes an observer, not settings
    with pytest.raises(MonitorConfigError):
        JoinErrorMonitor(every_n_steps=-1)


def test_attach_before_quantizing_is_refused():
    with pytest.raises(ValueError, match="qat\\(model"):
        JoinErrorMonitor().attach(ResidualNet(), QATQuantizer())


SLIM_BASE = os.path.join(REPO_ROOT, "configs", "slim", "residual_qat",
                         "picodet_demo_residual_qat.yml")


def slim_config(tmp_path, monitor_line):
    """The demo ResidualQAT slim config with a monitor setting and one epoch."""
    with open(SLIM_BASE) as stream:
        text = stream.read()
    text = text.replace("  rules: []\n", "  rules: []\n  " + monitor_line + "\n")
    text = text.replace("\nepoch: 3\n", "\nepoch: 1\n")
    path = tmp_path / "slim.yml"
    path.write_text(text)
    return str(path)


def test_train_cli_refuses_an_unknown_monitor_key(tmp_path, dataset_overrides):
    result = run_tool(["tools/train.py", "-c", DEMO_CONFIG, "--slim_config",
                       slim_config(tmp_path, "monitor: {every: 5}"), "-o"] + dataset_overrides)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "every" in errors[0] and "every_n_steps" in errors[0] and "slim.yml" in errors[0]


def read_report(folder):
    with open(os.path.join(folder, "join_errors.json")) as stream:
        report = json.load(stream)
    assert os.path.getsize(os.path.join(folder, "join_sqnr.png")) > 0
    with open(os.path.join(folder, "join_errors.csv")) as stream:
        return report, list(csv.DictReader(stream))


def test_train_cli_writes_the_report_beside_the_checkpoints(tmp_path, dataset_overrides):
    out = tmp_path / "out"
    result = run_tool_ok(["tools/train.py", "-c", DEMO_CONFIG, "--slim_config",
                          slim_config(tmp_path, "monitor: {every_n_steps: 1}"),
                          "--output_dir", str(out), "-o", "TrainReader.batch_size=8"]
                         + dataset_overrides)
    report, rows = read_report(out / "slim" / "join_monitor")
    assert "neck:add#0/in0" in report["quantizers"]
    assert sorted({int(r["step"]) for r in rows}) == [1, 2]  # 16 images / batch 8
    assert "join monitor step 2: worst SQNR" in result.stdout


PPDET_STYLE_TRAIN = """\
from ppdet.core.workspace import load_config, merge_config
from ppdet.engine import Trainer
from ppdet.slim import build_slim_model
from ppdet.utils.cli import ArgsParser

parser = ArgsParser()
parser.add_argument("--slim_config")
flags = parser.parse_args()
cfg = load_config(flags.config)
merge_config(flags.opt)
cfg = build_slim_model(cfg, flags.slim_config)
Trainer(cfg, mode="train").train()
# as in ppdet's tools/train.py nothing is called after training: the report comes at exit
"""


def test_launched_ppdet_train_script_gets_the_report_at_exit(tmp_path, dataset_overrides,
                                                             trained_weights):
    script = tmp_path / "train.py"
    script.write_text(PPDET_STYLE_TRAIN)
    out = tmp_path / "out"
    run_tool_ok(["-m", "slimext.launch", str(script), "-c", DEMO_CONFIG, "--slim_config",
                 slim_config(tmp_path, "monitor: {every_n_steps: 1}"),
                 "-o", "save_dir=" + str(out), "pretrain_weights=" + trained_weights,
                 "TrainReader.batch_size=8"] + dataset_overrides)
    report, rows = read_report(out / "slim" / "join_monitor")
    assert report["quantizers"] and sorted({int(r["step"]) for r in rows}) == [1, 2]
