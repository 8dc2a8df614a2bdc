"""Each PaddleDetection family this project ships configs for quantizes, exports, validates
and runs oneDNN INT8, agreeing with its fake-quant model.

Per family: the repo's demo config built with the real ppdet classes, the family's
ResidualQAT slim config planned on it, quantizer scales collected on two forwards, the
weights exported through slimext.pipeline.export (ppdet's Trainer export, validated), the
INT8 predictor built in a fresh process, and its detections compared with the fake-quant
dygraph model's on the same demo image.

Random weights: ppdet's default batch-norm statistics (mean 0, variance 1) make random
features grow layer by layer until the heads saturate, so each test first sets them from
one forward, as a short training would.

The scales come from other demo images than the one compared, as a training's come from
its training set. Scales taken from the compared image itself put its largest values
exactly on each clipping edge, where the fake-quant model saturates at -127 steps and
Paddle 3's quantize_linear (qmin -128) and oneDNN's s8 at -128: one step on one element,
which a random network amplifies (legacy PicoDet: 0.47 of the top score).
"""
import contextlib
import copy
import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from conftest import REPO_ROOT
from slimext.analysis.detection_agreement import score_deviation
from slimext.latency_exports import randomize_zero_filters, set_batch_norm_statistics
from slimext.quant.tensor_scales import apply_export_scales

# family -> (demo config, ResidualQAT slim config, the nms section its -o keys live in)
FAMILIES = {
    "picodet_lcnet": ("configs/picodet/picodet_xs_192_demo_lcnet.yml",
                      "configs/slim/residual_qat/picodet_demo_residual_qat.yml",
                      "PicoHeadV2.nms"),
    "picodet_esnet": ("configs/picodet/legacy_model/picodet_s_192_demo_esnet.yml",
                      "configs/slim/residual_qat/picodet_esnet_demo_residual_qat.yml",
                      "PicoHead.nms"),
    "ppyoloe_plus_s": ("configs/ppyoloe/ppyoloe_plus_crn_s_192_demo.yml",
                       "configs/slim/residual_qat/ppyoloe_plus_s_demo_residual_qat.yml",
                       "PPYOLOEHead.nms"),
    "yolov3_mobilenet_v3": ("configs/yolov3/yolov3_mobilenet_v3_large_192_demo.yml",
                            "configs/slim/residual_qat/yolov3_mobilenet_v3_demo_residual_qat.yml",
                            "BBoxPostProcess.nms"),
    "gfl_r18vd": ("configs/gfl/gfl_r18vd_192_demo.yml",
                  "configs/slim/residual_qat/gfl_r18vd_demo_residual_qat.yml",
                  "GFLHead.nms"),
}

# Join kinds each family's plan must quantize at least once (what its architecture has).
JOIN_KINDS = {
    "picodet_lcnet": ("add", "concat"),
    "picodet_esnet": ("add", "concat"),
    "ppyoloe_plus_s": ("add", "concat"),
    "yolov3_mobilenet_v3": ("add", "concat"),
    "gfl_r18vd": ("add",),
}

# Planned-float convs that run fp32 in the INT8 predictor, by the reason the plan gives.
# The one place to tighten when a family's float convs get quantized.
FLOAT_BY_PLAN = {
    # ppdet marks the DFL projection skip_quant; it runs once per level (3 convs).
    "ppyoloe_plus_s": {"yolo_head.proj_conv": 3},
    # ppdet marks the three YOLO output convs skip_quant.
    "yolov3_mobilenet_v3": {"yolo_head.yolo_output.0": 1, "yolo_head.yolo_output.1": 1,
                            "yolo_head.yolo_output.2": 1},
    # the slim config plans PicoHead's list-held head_cls0..3 float (their wrappers never run).
    "picodet_esnet": {"head.head_cls0": 1, "head.head_cls1": 1, "head.head_cls2": 1,
                      "head.head_cls3": 1},
    # the slim config plans ppdet FPN's list-held convs float (their wrappers never run).
    "gfl_r18vd": {name: 1 for name in (
        "neck.fpn_inner_res3_sum_lateral", "neck.fpn_res3_sum", "neck.fpn_inner_res4_sum_lateral",
        "neck.fpn_res4_sum", "neck.fpn_inner_res5_sum", "neck.fpn_res5_sum", "neck.fpn_6",
        "neck.fpn_7")},
}

# fp32 convs in the INT8 predictor's optimized program: the calls of planned-float convs,
# and in GFL the backbone's last conv: oneDNN fuses it with the block's residual add and
# ReLU, and such a conv runs INT8 only with an output scale, which C5 (read by the float
# FPN lateral conv alone) does not have.
FP32_CONVS = {family: sum(FLOAT_BY_PLAN.get(family, {}).values()) for family in FAMILIES}
FP32_CONVS["gfl_r18vd"] += 1

# INT8 vs fake-quant: the top detection scores (sorted) may differ by this share of the
# highest score. Both run the same 8-bit scales; what differs is oneDNN's integer
# accumulation and its requantize rounding (half an LSB per quantized tensor, a few tens of
# them in series), which the fake-quant model simulates in float: a few per cent of the
# range. A wrong scale or a conv running on another scale moves scores by a large fraction.
SCORE_TOLERANCE = 0.1
# Families whose INT8 run does not yet agree with fake-quant (a known defect, tracked):
# the test expects the disagreement, so it fails once fixed and must then be removed here.
KNOWN_DISAGREEMENT = {}
TOP_K = 50
# The demo val images the scales are collected on (the compared one is image 0).
CALIBRATION_IMAGES = (1, 2, 3)

RUN_INT8 = """
import json, sys, numpy as np
from slimext.deploy.predictor import DetectorPredictor
predictor = DetectorPredictor(sys.argv[1], "int8", cpu_threads=1)
inputs = dict(np.load(sys.argv[2]))
boxes, counts = predictor.run(inputs)
np.save(sys.argv[3], boxes[:int(counts[0])])
report = predictor.int8_report
print(json.dumps({"int8_convs": report.int8_convs, "convs": report.convs,
                  "fp32_convs": report.fp32_convs, "line": report.line()}))
"""


def _path(relative):
    return os.path.join(REPO_ROOT, relative)


def _overrides(nms_section, dataset_overrides):
    """Every box scored (threshold 0) and more kept: the comparison sees the score spread,
    not only what passes a threshold a random model never reaches."""
    overrides = dict(item.split("=", 1) for item in dataset_overrides)
    overrides.update({nms_section + ".score_threshold": 0.0,
                      nms_section + ".keep_top_k": TOP_K})
    return overrides


def collect_scales(model, inputs, steps=2):
    """Moving-average scales from a few forwards: the quantizers observe as in training,
    nothing else changes (no loss, no weight update)."""
    observers = [layer for layer in model.sublayers() if "MovingAverage" in type(layer).__name__
                 or hasattr(layer, "_moving_rate")]
    assert observers, "no moving-average quantizer found in the QAT model"
    for layer in observers:
        layer.train()
    with paddle.no_grad():
        for _ in range(steps):
            model(inputs)
    for layer in observers:
        layer.eval()


@contextlib.contextmanager
def config_restored(workspace):
    """ppdet's create() writes built objects into its global config; the export after the
    in-process build must read the YAML values again."""
    config = workspace.global_config
    saved = {key: copy.deepcopy(dict(value)) if isinstance(value, dict) else copy.deepcopy(value)
             for key, value in config.items()}
    try:
        yield
    finally:
        for key in list(config):
            if key not in saved:
                del config[key]
        for key, items in saved.items():
            if isinstance(config.get(key), dict) and isinstance(items, dict):
                config[key].clear()
                config[key].update(items)
            else:
                config[key] = items


def build_quantized(workspace, config, slim_config, overrides, inputs, calibration):
    from slimext.commands.slim_config import read_slim_config
    from slimext.quant import QATQuantizer

    cfg = workspace.load_config(config)
    workspace.merge_config(_nested(overrides))
    paddle.seed(0)
    model = workspace.create(cfg.architecture)
    model.eval()
    randomize_zero_filters(model)
    set_batch_norm_statistics(model, inputs)
    settings = read_slim_config(slim_config).settings()
    qat = QATQuantizer.from_settings(settings.quant)
    height, width = inputs["image"].shape[2:]
    model = qat(model, example_inputs=[{"image": paddle.randn([1, 3, height, width]),
                                        "im_shape": inputs["im_shape"],
                                        "scale_factor": inputs["scale_factor"]}])
    model.eval()
    for batch in calibration:
        collect_scales(model, batch, steps=1)
    return cfg, qat, model


def _nested(overrides):
    from slimext.pipeline import nested_overrides

    return nested_overrides(overrides)


def _image_inputs(tiny_dataset, config, workspace, index=0):
    """A demo val image preprocessed as the family's TestReader does (via a float export's
    infer_cfg would cost an export; ppdet's own transforms read the same config)."""
    from ppdet.data.transform import operators

    cfg = workspace.load_config(config)
    sample = {"im_file": os.path.join(tiny_dataset, "val", "val_{:05d}.png".format(index))}
    with open(sample["im_file"], "rb") as f:
        sample["image"] = f.read()
    for transform in cfg.TestReader["sample_transforms"]:
        (name, args), = transform.items()
        sample = getattr(operators, name)(**(args or {}))(sample)
    image = sample["image"][None].astype("float32")
    return {"image": image, "im_shape": sample["im_shape"][None].astype("float32"),
            "scale_factor": sample["scale_factor"][None].astype("float32")}


def clear_config_values(workspace):
    """ppdet's load_config merges into what earlier configs of this process left (a
    TestReader's PadStride from another family would reach this export's infer_cfg); a tool
    starts from the registered modules with nothing set, and so does each family here."""
    from ppdet.core.config.schema import SchemaDict

    config = workspace.global_config
    for key in list(config):
        if isinstance(config[key], SchemaDict):
            config[key].clear()
        else:
            del config[key]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_quantizes_exports_and_runs_int8(family, tmp_path, tiny_dataset,
                                                dataset_overrides, ppdet_workspace):
    from slimext import pipeline

    clear_config_values(ppdet_workspace)   # restored by ppdet_workspace afterwards

    config, slim_config, nms_section = (_path(p) if p.endswith(".yml") else p
                                        for p in FAMILIES[family])
    overrides = _overrides(nms_section, dataset_overrides)
    arrays = _image_inputs(tiny_dataset, config, ppdet_workspace)
    inputs = {k: paddle.to_tensor(v) for k, v in arrays.items()}
    calibration = [{k: paddle.to_tensor(v) for k, v in _image_inputs(
        tiny_dataset, config, ppdet_workspace, index).items()} for index in CALIBRATION_IMAGES]
    with config_restored(ppdet_workspace):
        _, qat, model = build_quantized(ppdet_workspace, config, slim_config, overrides, inputs,
                                        calibration)

    # The plan: joins of the kinds the architecture has, nothing uncovered.
    kinds = [join.kind for join in qat.plan.active_joins()]
    for kind in JOIN_KINDS[family]:
        assert kinds.count(kind) > 0, (kind, sorted(set(kinds)))
    assert qat.uncovered == []
    planned_float = {s.path for s in qat.plan.layers if s.skipped}
    assert planned_float == set(FLOAT_BY_PLAN.get(family, {}))

    weights = str(tmp_path / "qat")
    paddle.save(model.state_dict(), weights + ".pdparams")

    # The project's export: ppdet's Trainer export with the slim config, validated.
    model_dir = pipeline.export(config, weights, str(tmp_path / "export"),
                                slim_config=slim_config, overrides=overrides)
    with open(os.path.join(model_dir, "quant_plan.json")) as f:
        report = json.load(f)["report"]
    assert report["int8_weights"] == report["planned_layers"] == len(
        qat.plan.quantized_layers()), {k: v for k, v in report.items() if k != "int8_constants"}

    # The fake-quant model the export describes: the export built its own model from the
    # checkpoint and gave one scale to each tensor there; this instance takes the same.
    assert apply_export_scales(model, qat.plan, report["tensor_scales_unified"]) == sum(
        len(change["quantizers"]) for change in report["tensor_scales_unified"])
    with paddle.no_grad():
        out = model(inputs)
    fake_quant = out["bbox"].numpy()[:int(out["bbox_num"].numpy()[0])]

    np.savez(str(tmp_path / "inputs.npz"), **arrays)
    result = subprocess.run([sys.executable, "-c", RUN_INT8, model_dir,
                             str(tmp_path / "inputs.npz"), str(tmp_path / "int8.npy")],
                            capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    kernels = json.loads(result.stdout.strip().splitlines()[-1])
    # Every planned conv INT8; the fp32 ones are exactly the calls of planned-float convs.
    assert kernels["convs"] - kernels["int8_convs"] == FP32_CONVS[family], kernels["line"]

    int8 = np.load(str(tmp_path / "int8.npy"))
    # NMS may keep a few boxes more or less where scores nearly tie: the top ones compared.
    deviation, count = score_deviation(fake_quant, int8, TOP_K)
    assert count >= min(10, len(fake_quant)) > 0, (len(fake_quant), len(int8))
    scores = np.sort(fake_quant[:, 1])[::-1][:TOP_K]
    print("{}: {}; top-score deviation {:.3f} of the highest score (fake-quant top {} "
          "scores {:.3f}..{:.3f})".format(family, kernels["line"], deviation, len(scores),
                                          scores[0], scores[-1]))
    if family in KNOWN_DISAGREEMENT:
        assert deviation > SCORE_TOLERANCE, "fixed: remove {} from KNOWN_DISAGREEMENT".format(
            family)
    else:
        assert deviation <= SCORE_TOLERANCE, deviation
