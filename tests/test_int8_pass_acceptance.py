"""An export the validator accepts builds in Paddle's oneDNN INT8 predictor; one the pass
would abort on is refused at export, and a refused model ends the tools in one line.

The model is PP-YOLOE's distribution head in small: a softmax over bins projected by one
fixed conv whose filter is [0, 1, ..., reg_max], applied once per level, which ppdet marks
`skip_quant`. oneDNN's INT8 pass takes such an integer-valued float filter for an INT8
weight and aborts at predictor creation when it has no dequantize_linear.
"""
import json
import os
import subprocess
import sys

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import pytest
import yaml

from conftest import run_tool
from quant_models import example_input, train_steps
from slimext.quant import ExportValidationError, QATQuantizer, validate_saved_model
from slimext.quant.plan import MODEL_SKIP

INPUT_SPEC = [paddle.static.InputSpec([1, 3, 32, 32], "float32", "image")]
ABORT = "Could not find threshold information"


class ProjectedBins(nn.Layer):
    """Per level a regression conv, a softmax over reg_max + 1 bins, and one shared
    projection conv (PP-YOLOE's `proj_conv`) that the model marks skip_quant."""

    def __init__(self, channels=8, reg_max=4, levels=3, projection_scale=1.0):
        super().__init__()
        self.reg_max = reg_max
        self.stem = nn.Conv2D(3, channels, 3, padding=1)
        self.reg = nn.LayerList([nn.Conv2D(channels, 4 * (reg_max + 1), 1)
                                 for _ in range(levels)])
        self.proj_conv = nn.Conv2D(reg_max + 1, 1, 1, bias_attr=False)
        bins = paddle.linspace(0, reg_max, reg_max + 1) * projection_scale
        self.proj_conv.weight.set_value(bins.reshape([1, reg_max + 1, 1, 1]))
        self.proj_conv.weight.stop_gradient = True
        self.proj_conv.skip_quant = True

    def forward(self, x):
        x = F.relu(self.stem(x))
        distances = []
        for level, reg in enumerate(self.reg):
            feature = F.avg_pool2d(x, 2 ** level) if level else x
            bins = reg(feature)
            _, _, h, w = bins.shape
            bins = bins.reshape([-1, 4, self.reg_max + 1, h * w]).transpose([0, 2, 3, 1])
            distances.append(self.proj_conv(F.softmax(bins, axis=1)).flatten(1))
        return paddle.concat(distances, axis=1)


class StridedIntegral(nn.Layer):
    """GFL's distribution integral: per level a softmax over bins, projected onto one
    buffer [0, 1, ..., reg_max] by a matmul, times the level's stride (a scale op)."""

    def __init__(self, channels=8, reg_max=7, strides=(8, 16, 32)):
        super().__init__()
        self.reg_max, self.strides = reg_max, strides
        self.stem = nn.Conv2D(3, channels, 3, padding=1)
        self.reg = nn.LayerList([nn.Conv2D(channels, 4 * (reg_max + 1), 1) for _ in strides])
        self.register_buffer("project", paddle.linspace(0, reg_max, reg_max + 1))

    def forward(self, x):
        x = F.relu(self.stem(x))
        distances = []
        for level, (reg, stride) in enumerate(zip(self.reg, self.strides)):
            feature = F.avg_pool2d(x, 2 ** level) if level else x
            bins = F.softmax(reg(feature).transpose([0, 2, 3, 1]).reshape(
                [-1, self.reg_max + 1]), axis=1)
            distances.append((F.linear(bins, self.project) * stride).reshape([1, -1]))
        return paddle.concat(distances, axis=1)


def quantize(model, rules=None):
    qat = QATQuantizer(backend="onednn", rules=rules)
    model = qat(model, example_inputs=[example_input()])
    return qat, train_steps(model)


def export(tmp_path, model_kwargs=None, rules=None, head=ProjectedBins):
    """Export the head; write an infer_cfg.yml so the tools and create_detector load it."""
    paddle.seed(0)
    qat, model = quantize(head(**(model_kwargs or {})), rules)
    prefix = str(tmp_path / "model")
    report = qat.save_quantized_model(model, prefix, input_spec=INPUT_SPEC)
    write_infer_cfg(tmp_path)
    np.save(str(tmp_path / "x.npy"), example_input().numpy())
    np.save(str(tmp_path / "fake_quant.npy"), model(example_input()).numpy())
    return qat, report


def write_infer_cfg(model_dir, size=32):
    with open(os.path.join(str(model_dir), "infer_cfg.yml"), "w") as f:
        yaml.safe_dump({"label_list": ["object"], "Preprocess": [
            {"type": "Resize", "target_size": [size, size], "keep_ratio": False},
            {"type": "Permute"}]}, f)


RUN_INT8 = """
import json, sys, numpy as np
from slimext.deploy.predictor import DetectorPredictor
predictor = DetectorPredictor(sys.argv[1], "int8", cpu_threads=1)
out = predictor.run_raw({"image": np.load(sys.argv[1] + "/x.npy")})[0]
ref = np.load(sys.argv[1] + "/fake_quant.npy")
print(json.dumps({"int8_convs": predictor.int8_report.int8_convs,
                  "convs": predictor.int8_report.convs,
                  "max_diff": float(np.abs(out - ref).max()),
                  "ref_max": float(np.abs(ref).max())}))
"""


def run_int8(model_dir):
    return subprocess.run([sys.executable, "-c", RUN_INT8, str(model_dir)],
                          capture_output=True, text=True, timeout=300)


def test_the_plan_counts_a_skip_quant_layer_as_float():
    qat, _ = quantize(ProjectedBins())
    projection = next(s for s in qat.plan.layers if s.path == "proj_conv")
    assert projection.skipped and projection.source == MODEL_SKIP
    assert len(qat.plan.quantized_layers()) == 4
    assert "4 of 5 conv/linear layers quantized" in qat.plan.table()


def test_a_rule_quantizes_a_skip_quant_layer_on_purpose():
    qat, _ = quantize(ProjectedBins(), rules=[{"match": "proj_conv", "skip": False}])
    projection = next(s for s in qat.plan.layers if s.path == "proj_conv")
    assert not projection.skipped and projection.source == "rule 0"
    assert len(qat.plan.quantized_layers()) == 5


@pytest.mark.parametrize("rules, int8_convs", [(None, 4),
                                               ([{"match": "proj_conv", "skip": False}], 7)])
def test_a_projection_applied_per_level_exports_and_runs_int8(tmp_path, rules, int8_convs):
    _, report = export(tmp_path, rules=rules)
    result = run_int8(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    # Float on purpose: 4 convs INT8, the projection's 3 calls in fp32; quantized: all 7.
    assert (measured["int8_convs"], measured["convs"]) == (int8_convs, 7)
    assert measured["max_diff"] < 0.1 * measured["ref_max"]
    if rules is None:
        assert report["int8_constants"] == [
            {"weight": report["int8_constants"][0]["weight"], "op": "conv2d", "exact": True}]
    assert report["int8_weights"] == report["planned_layers"] == (4 if rules is None else 5)


def test_one_projection_buffer_scaled_per_level_keeps_each_level_s_stride_in_int8(tmp_path):
    """oneDNN folds each level's stride into the matmul's constant Y in place: with one
    dequantized copy read by every level, all strides multiplied into it (INT8 distances
    thousands of times too large); each level reads its own copy."""
    _, report = export(tmp_path, head=StridedIntegral)
    assert [c["op"] for c in report["int8_constants"]] == ["matmul_v2"]
    result = run_int8(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["max_diff"] < 0.05 * measured["ref_max"], measured


def test_export_refuses_an_integer_weight_the_pass_would_abort_on(tmp_path):
    # Bins up to 400: no exact INT8 copy exists, so the export cannot keep it float safely.
    with pytest.raises(ExportValidationError) as refused:
        export(tmp_path, {"projection_scale": 100.0})
    message = str(refused.value)
    assert "1 problem(s)" in message and "conv2d reads the float weight" in message
    assert ABORT in message and "skip: false" in message


@pytest.fixture(scope="module")
def refused_export(tmp_path_factory):
    """The export the validator refuses, written anyway (validation switched off)."""
    import slimext.quant.export as export_module

    model_dir = tmp_path_factory.mktemp("refused")
    original = export_module.validate_program
    export_module.validate_program = lambda *args, **kwargs: {}
    try:
        export(model_dir, {"projection_scale": 100.0})
    finally:
        export_module.validate_program = original
    return model_dir


def test_the_program_the_validator_refuses_aborts_the_int8_predictor(refused_export):
    result = run_int8(refused_export)
    assert result.returncode != 0 and ABORT in result.stderr, result.stderr[-3000:]
    with pytest.raises(ExportValidationError, match="conv2d reads the float weight"):
        validate_saved_model(str(refused_export / "model"))


def test_create_detector_raises_one_line_for_a_refused_model(refused_export):
    from slimext.deploy.predictor import PredictorError
    from slimext.deploy.runtimes import create_detector

    with pytest.raises(PredictorError) as refused:
        create_detector(str(refused_export), "paddle", "int8", cpu_threads=1)
    message = str(refused.value)
    assert "\n" not in message and ABORT in message and "could not build" in message


def _image(tmp_path):
    import cv2

    path = str(tmp_path / "image.png")
    cv2.imwrite(path, np.random.RandomState(0).randint(0, 256, (40, 40, 3)).astype("uint8"))
    return path


def assert_one_error_line(result, *words):
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    for word in words:
        assert word in errors[0], errors[0]


def test_infer_on_a_model_the_int8_pass_refuses_prints_one_error(refused_export, tmp_path):
    result = run_tool(["tools/infer.py", "--model_dir", str(refused_export), "--image_file",
                       _image(tmp_path), "--precision", "int8", "--output_dir",
                       str(tmp_path / "out")])
    assert_one_error_line(result, ABORT, "re-export")


def test_infer_on_a_model_that_fails_to_run_prints_one_error(refused_export, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("model.pdmodel", "model.pdiparams", "x.npy"):
        (broken / name).write_bytes((refused_export / name).read_bytes())
    write_infer_cfg(broken, size=48)  # the program takes 32 x 32 images only
    result = run_tool(["tools/infer.py", "--model_dir", str(broken), "--image_file",
                       _image(tmp_path), "--precision", "onednn", "--output_dir",
                       str(tmp_path / "out")])
    assert_one_error_line(result, "could not run")


def test_infer_on_a_damaged_program_prints_one_error(refused_export, tmp_path):
    broken = tmp_path / "damaged"
    broken.mkdir()
    (broken / "model.pdmodel").write_bytes(b"not a program")
    (broken / "model.pdiparams").write_bytes((refused_export / "model.pdiparams").read_bytes())
    write_infer_cfg(broken)
    result = run_tool(["tools/infer.py", "--model_dir", str(broken), "--image_file",
                       _image(tmp_path), "--output_dir", str(tmp_path / "out")])
    assert_one_error_line(result, "could not build")


def test_deploy_bench_with_no_case_that_runs_prints_one_error(refused_export):
    result = run_tool(["tools/deploy_bench.py", "--model_dir", str(refused_export),
                       "--runtimes", "paddle", "--runs", "1", "--warmup", "0"])
    assert_one_error_line(result, "no case could run", "PredictorError")
