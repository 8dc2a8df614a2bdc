"""Sensitivity analysis: a deliberately damaged layer ranks first, rules keep it, files are written."""
import json
import os

import numpy as np
import paddle
import pytest
import yaml

from conftest import DEMO_CONFIG, REPO_ROOT, run_tool, run_tool_ok
from quant_models import MixedJoins, ResidualNet, example_input, train_steps
from slimext.analysis.raw_outputs import model_outputs
from slimext.analysis.sensitivity import (MODES, SensitivityRanking, UnitScore, calibrate,
                                          prepare_measurement, quant_units, rank_units)
from slimext.analysis.sensitivity_report import write_report
from slimext.analysis.sensitivity_rules import (glob_escape, slim_yaml_text, suggest_rules,
                                                suggested_slim_config)
from slimext.quant import QATQuantizer
from slimext.quant.quantizers import all_quantizers, bypassed
from test_cli_errors import assert_one_error_line

DEMO_SLIM = os.path.join(REPO_ROOT, "configs", "slim", "residual_qat",
                         "picodet_demo_residual_qat.yml")
DAMAGED = "blocks.1.conv2"   # undamaged, it ranks 4th (alone) and 5th or lower (float_alone)


def damaged_residual_net():
    """ResidualNet whose blocks.1.conv2 input has one channel 1000x larger than the rest.

    The float function is unchanged (bn1 scales that channel up, conv2 scales it back down),
    but conv2's per-tensor 8-bit input scale now rounds every other channel to zero.
    """
    paddle.seed(0)
    model = train_steps(ResidualNet())
    block = model.blocks[1]
    for param in (block.bn1.weight, block.bn1.bias):
        value = param.numpy()
        value[3] *= 1000.0
        param.set_value(value)
    weight = block.conv2.weight.numpy()
    weight[:, 3] /= 1000.0
    block.conv2.weight.set_value(weight)
    return model


def calibration_batches(count=2):
    paddle.seed(7)
    return [[paddle.randn([4, 3, 32, 32])] for _ in range(count)]


def quantized(model, rules=None):
    qat = QATQuantizer(rules=rules)
    return qat, qat(model, example_inputs=[example_input()])


@pytest.fixture(scope="module")
def damaged():
    """(qat, model, batches) of the damaged net."""
    qat, model = quantized(damaged_residual_net())
    return qat, model, calibration_batches()


def measure(damaged, mode):
    """Calibrate as the mode needs (float activations for `alone`), then rank by SQNR."""
    qat, model, batches = damaged
    setup = prepare_measurement(model, qat.plan, batches, mode)
    return rank_units(model, setup.units, setup.quantizers, setup.sqnr, mode)


@pytest.mark.parametrize("mode", MODES)
def test_damaged_layer_ranks_first(damaged, mode):
    ranking = measure(damaged, mode)
    assert ranking.scores[0].unit.name == DAMAGED
    assert ranking.float_value == float("inf") and ranking.quant_value < 20
    if mode == "alone":   # quantizing the damaged layer alone costs almost everything
        assert ranking.scores[0].value < ranking.scores[1].value - 10.0
        assert ranking.scores[0].value < ranking.quant_value + 3.0
    else:                 # keeping it float recovers more than keeping any other unit float
        assert ranking.scores[0].value > ranking.scores[1].value + 3.0
    assert len(ranking.scores) == 12   # 6 layers + 2 joins x (in0, in1, out)


def test_units_group_layer_quantizers_and_count_a_shared_join_once():
    qat, model = quantized(MixedJoins())
    units = {u.name: u for u in quant_units(model, qat.plan)}
    assert units["fuse"].quantizers == ["fuse/input", "fuse/weight"]
    assert units["fuse"].kind == "layer" and units["fuse"].site == "fuse"
    shared = units["<model>:concat#0/shared"]
    assert shared.kind == "join" and shared.site == "<model>:concat#0"
    assert shared.quantizers == ["<model>:concat#0/shared"]
    assert len(units) == len(qat.plan.layers) + len(qat.plan.quantizers) == 8 + 19


def test_calibration_sets_input_scale_from_the_batches_and_keeps_batchnorm():
    qat, model = quantized(damaged_residual_net())
    quantizers = all_quantizers(model, qat.plan)
    running_mean = model.blocks[0].bn1._mean.numpy().copy()
    batch = calibration_batches(1)
    calibrate(model, quantizers, batch, model_outputs)
    # From a restarted moving average, one batch gives exactly its abs max.
    assert quantizers["stem/input"]._scale.numpy().item() == pytest.approx(
        float(np.abs(batch[0][0].numpy()).max()), rel=1e-5)
    assert np.array_equal(model.blocks[0].bn1._mean.numpy(), running_mean)
    assert not any(layer.training for layer in model.sublayers())


def test_float_upstream_calibration_sees_float_activations():
    qat, model = quantized(damaged_residual_net())
    quantizers = all_quantizers(model, qat.plan)
    batch = calibration_batches(1)
    seen = []
    hook = model.head.register_forward_pre_hook(lambda _l, inputs: seen.append(inputs[0]))
    with bypassed(quantizers.values()):
        float_output = model(*batch[0]).numpy()
    calibrate(model, quantizers, batch, model_outputs, float_upstream=True)
    hook.remove()
    assert quantizers["head/input"]._scale.numpy().item() == pytest.approx(
        float(np.abs(seen[0].numpy()).max()), rel=1e-5)
    assert np.array_equal(seen[1].numpy(), seen[0].numpy())   # nothing was quantized
    assert not np.allclose(model(*batch[0]).numpy(), float_output, atol=1e-3)  # now it is


def test_suggested_yaml_keeps_top_units_at_16_bits(damaged, tmp_path):
    qat = damaged[0]
    ranking = measure(damaged, "alone")
    rules = suggest_rules(ranking.top(2), qat.plan, keep="16")
    assert rules[0] == {"match": DAMAGED, "weight_bits": 16, "activation_bits": 16}

    slim = tmp_path / "slim.yml"
    slim.write_text("slim: ResidualQAT\nResidualQAT:\n  backend: onednn\n"
                    "  rules:\n  - {match: 'head', weight_bits: 8}\nepoch: 3\n")
    data = suggested_slim_config(str(slim), "ResidualQAT", [{"match": "head", "weight_bits": 8}],
                                 rules)
    parsed = yaml.safe_load(slim_yaml_text(data, ["suggested", "", "by a test"]))
    assert parsed["epoch"] == 3
    assert parsed["ResidualQAT"]["rules"][0] == {"match": "head", "weight_bits": 8}
    assert parsed["ResidualQAT"]["rules"][1:] == rules   # appended: they win

    fresh_qat, _ = quantized(damaged_residual_net(), parsed["ResidualQAT"]["rules"])
    setting = next(s for s in fresh_qat.plan.layers if s.path == DAMAGED)
    assert (setting.weight_bits, setting.activation_bits, setting.source) == (16, 16, "rule 1")
    assert next(s for s in fresh_qat.plan.layers if s.path == "stem").weight_bits == 8


def _ranking_of(units):
    return SensitivityRanking("sqnr", "SQNR (dB)", "alone", float("inf"), 10.0,
                              [UnitScore(u, 10.0 + i) for i, u in enumerate(units)])


def test_keep_float_rules_address_join_places_and_layers():
    qat, model = quantized(MixedJoins())
    units = {u.name: u for u in quant_units(model, qat.plan)}
    chosen = [units[n] for n in ("inner:add#0/in1", "fuse", "<model>:concat#0/shared",
                                 "inner:add#0/out")]
    rules = suggest_rules(_ranking_of(chosen).top(4), qat.plan, keep="float")
    assert rules == [{"match": "inner:add#0", "inputs": [0], "output": False},
                     {"match": "fuse", "skip": True},
                     {"match": "<model>:concat#0", "skip": True}]

    fresh, _ = quantized(MixedJoins(), rules)
    joins = {j.site: j for j in fresh.plan.joins}
    assert list(joins["inner:add#0"].inputs) == [0] and joins["inner:add#0"].output is None
    assert joins["<model>:concat#0"].skipped and "rule 2" in joins["<model>:concat#0"].skipped
    assert next(s for s in fresh.plan.layers if s.path == "fuse").skipped


def test_keep_16_raises_every_quantizer_of_the_join():
    qat, model = quantized(MixedJoins())
    unit = next(u for u in quant_units(model, qat.plan) if u.name == "inner:add#0/in1")
    rules = suggest_rules([unit], qat.plan, keep="16")
    assert rules == [{"match": "inner:add#0", "activation_bits": 16}]
    fresh, _ = quantized(MixedJoins(), rules)
    bits = {n: s.bits for n, s in fresh.plan.quantizers.items()}
    assert bits["inner:add#0/in0"] == bits["inner:add#0/in1"] == bits["inner:add#0/out"] == 16
    assert bits["<model>:add#2/in0"] == 8


def test_glob_escape_matches_only_the_exact_name():
    import fnmatch

    for name in ("blocks[0].conv", "a*b?c", "x]y", "neck:add#0"):
        pattern = glob_escape(name)
        assert fnmatch.fnmatchcase(name, pattern)
        assert not fnmatch.fnmatchcase(name + "x", pattern)
    assert not fnmatch.fnmatchcase("a1b2c", glob_escape("a*b?c"))


def test_report_writes_table_json_chart_and_yaml(damaged, tmp_path):
    qat = damaged[0]
    ranking = measure(damaged, "float_alone")
    rules = suggest_rules(ranking.top(1), qat.plan)
    paths = write_report(str(tmp_path / "out"), ranking, {"mode": "float_alone"},
                         "slim: ResidualQAT\n", rules, plot_top=5)
    assert sorted(os.listdir(str(tmp_path / "out"))) == sorted(
        os.path.basename(p) for p in paths.values())   # no temporary files left
    data = json.loads(open(paths["json"]).read())
    assert data["ranking"]["units"][0]["unit"] == DAMAGED
    assert data["ranking"]["all_float"] == "inf"
    assert data["ranking"]["units"][0]["delta_vs_quant"] > 1.0
    assert data["suggested_rules"] == rules
    with open(paths["chart"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    table = open(paths["table"]).read().splitlines()
    assert table[3].split()[:3] == ["1", DAMAGED, "layer"]


# The demo PicoDet end to end, as a user runs it.

def _cli(args, dataset_overrides, weights, out):
    return ["tools/quant_sensitivity.py", "-c", DEMO_CONFIG, "--slim_config", DEMO_SLIM,
            "--num_batches", "1", "--output_dir", str(out)] + list(args) + \
        ["-o", "weights=" + weights, "EvalReader.batch_size=2"] + dataset_overrides


def test_cli_on_demo_picodet_writes_report_and_a_usable_slim_config(
        trained_weights, dataset_overrides, tmp_path):
    out = tmp_path / "sens"
    result = run_tool_ok(_cli(["--top_k", "3", "--keep", "float"], dataset_overrides,
                              trained_weights, out))
    assert "rank  unit" in result.stdout and "suggested_slim.yml" in result.stdout
    data = json.loads((out / "sensitivity.json").read_text())
    # 98 convs + 25 join quantizers: 4 shared concats, the add's 3, 3 for each of 6 SE gates
    assert data["settings"]["num_batches"] == 1 and data["settings"]["units"] == 123
    units = data["ranking"]["units"]
    assert len(units) == 123 and float(units[0]["value"]) <= float(units[-1]["value"])
    assert all(u["delta_vs_quant"] is None or u["delta_vs_quant"] > -1.0 for u in units)
    assert (out / "sensitivity.png").read_bytes()[:4] == b"\x89PNG"
    suggested = yaml.safe_load((out / "suggested_slim.yml").read_text())
    assert suggested["slim"] == "ResidualQAT" and suggested["epoch"] == 3
    assert len(suggested["ResidualQAT"]["rules"]) == 3

    # The suggestion is a working slim config: its plan leaves the top units in float.
    plan_json = tmp_path / "plan.json"
    run_tool_ok(["tools/quant_plan.py", "-c", DEMO_CONFIG, "--slim_config",
                 str(out / "suggested_slim.yml"), "--json", str(plan_json),
                 "-o"] + dataset_overrides)
    plan = json.loads(plan_json.read_text())
    skipped_layers = {layer["path"] for layer in plan["layers"] if layer["skipped"]}
    for unit in units[:3]:
        if unit["kind"] == "layer":
            assert unit["site"] in skipped_layers
        else:
            assert unit["unit"] not in plan["quantizers"]


def test_cli_map_measures_only_the_candidates(trained_weights, dataset_overrides, tmp_path):
    out = tmp_path / "map"
    run_tool_ok(_cli(["--metric", "map", "--candidates", "2", "--mode", "float_alone"],
                     dataset_overrides, trained_weights, out))
    data = json.loads((out / "sensitivity.json").read_text())
    assert data["ranking"]["metric"] == "map" and len(data["ranking"]["units"]) == 2
    assert len(data["screening"]["units"]) == 123
    top_sqnr = {u["unit"] for u in data["screening"]["units"][:2]}
    assert {u["unit"] for u in data["ranking"]["units"]} == top_sqnr
    assert all(0.0 <= u["value"] <= 1.0 for u in data["ranking"]["units"])
    # Every mAP (all-float, all-quantized, 2 candidates) scored the whole val set of 8 images.
    assert data["settings"]["map_images_per_evaluation"] == [8]


@pytest.mark.parametrize("args, words", [
    (["--metric", "loss"], ["--metric", "sqnr | map"]),
    (["--mode", "both"], ["--mode", "float_alone"]),
    (["--num_batches", "0"], ["--num_batches", "at least 1"]),
    (["--keep", "8"], ["--keep", "16 | float"]),
    (["--candidates", "5"], ["--candidates", "--metric map"]),
])
def test_cli_bad_flags_fail_before_any_work(args, words, tiny_dataset, dataset_overrides,
                                            tmp_path):
    out = tmp_path / "never"
    result = run_tool(_cli(args, dataset_overrides, str(tmp_path / "unused"), out))
    assert result.returncode == 2
    assert_one_error_line(result, *words)
    assert not out.exists()


def test_cli_refuses_missing_weights_and_other_slim_methods(dataset_overrides, tmp_path):
    result = run_tool(_cli([], dataset_overrides, str(tmp_path / "none"), tmp_path / "o"))
    assert result.returncode == 2
    assert_one_error_line(result, "none.pdparams", "not found")

    weights = tmp_path / "w.pdparams"
    paddle.save({}, str(weights))
    args = _cli([], dataset_overrides, str(weights), tmp_path / "o")
    args[args.index(DEMO_SLIM)] = os.path.join(REPO_ROOT, "configs", "slim", "quant",
                                               "picodet_demo_qat.yml")
    result = run_tool(args)
    assert result.returncode == 2
    assert_one_error_line(result, "slim: QAT", "slim: ResidualQAT")

    bad_rule = tmp_path / "bad_rule.yml"
    bad_rule.write_text("slim: ResidualQAT\nResidualQAT:\n  rules:\n  - {match: head, bits: 4}\n")
    args[args.index("--slim_config") + 1] = str(bad_rule)
    result = run_tool(args)
    assert result.returncode == 2
    assert_one_error_line(result, "bad_rule.yml", "unknown key(s) bits")
