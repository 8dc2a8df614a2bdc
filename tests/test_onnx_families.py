"""The ONNX route for every detector family users bring, at its COCO input size: PicoDet
LCNet S, M and L (XS is the demo model of tests/test_onnx_export.py), legacy PicoDet ESNet
and PP-YOLOE+ s, each exported float and INT8 (ResidualQAT scales) and run by ONNX Runtime.

Random weights with scales calibrated on demo images (slimext.latency_exports): what is
checked is the conversion, so each ONNX run is held to Paddle Inference running the same
program. Float: within 1e-4 of each output's range. INT8: the QDQ graph run node by node
equals Paddle's float run of the QDQ program (the fake-quant arithmetic) within the INT8
tolerance, and ONNX Runtime's optimized run uses integer kernels and stays within it too.
Where Paddle's own runtimes differ by more on these deep random networks (its plain and
oneDNN fp32 kernels; its oneDNN INT8 from fake quant), twice that is the bound.
"""
import os

import pytest

from conftest import REPO_ROOT
from onnx_helpers import (copy_with_nms_inputs_as_outputs, ort_session, relative_error,
                          run_session)
from slimext.deploy.predictor import DetectorPredictor
from slimext.deploy.preprocess import load_image
from slimext.deploy.runtimes import create_detector
from slimext.latency_exports import build_latency_exports
from slimext.onnx import convert_export

INT8_TOLERANCE = 0.05   # of the output range, as every INT8 runtime is held to
FLOAT_TOLERANCE = 1e-4
PICODET_QAT = "configs/slim/residual_qat/picodet_s_320_residual_qat.yml"
BENCHMARK = {"export.benchmark": True}   # raw head outputs, no decoding or NMS
# family -> (COCO config, ResidualQAT slim config, export overrides). PP-YOLOE+ has no
# benchmark export: its decoding stays in and the NMS inputs are compared; NMS itself gets a
# score threshold that random weights do not reach, so that it costs next to nothing.
FAMILIES = {
    "picodet_s_lcnet": ("configs/picodet/picodet_s_320_coco_lcnet.yml", PICODET_QAT, BENCHMARK),
    "picodet_m_lcnet": ("configs/picodet/picodet_m_320_coco_lcnet.yml", PICODET_QAT, BENCHMARK),
    "picodet_l_lcnet": ("configs/picodet/picodet_l_320_coco_lcnet.yml", PICODET_QAT, BENCHMARK),
    "picodet_s_esnet": ("configs/picodet/legacy_model/picodet_s_320_coco.yml",
                        "configs/slim/residual_qat/picodet_esnet_demo_residual_qat.yml",
                        BENCHMARK),
    "ppyoloe_plus_s": ("configs/ppyoloe/ppyoloe_plus_crn_s_80e_coco.yml",
                       "configs/slim/residual_qat/ppyoloe_plus_s_demo_residual_qat.yml",
                       {"PPYOLOEHead.nms.score_threshold": 0.9}),
}

# Conv calls the slim configs plan float: PP-YOLOE+'s skip_quant DFL projection (once per
# level), ESNet's list-held head_cls0..3.
PLANNED_FLOAT_CONVS = {"ppyoloe_plus_s": 3, "picodet_s_esnet": 4}


def _bounds(paddle_other, paddle_reference, floor):
    """Per output: twice what Paddle's other runtime deviates from the reference, at least
    floor."""
    return [max(floor, 2 * relative_error(o, r)) for o, r in zip(paddle_other, paddle_reference)]


def _raw_outputs_export(model_dir, tmp_path, name):
    """The export itself, or where it ends in NMS a copy that outputs what NMS reads."""
    with open(os.path.join(model_dir, "model.pdmodel"), "rb") as f:
        has_nms = b"multiclass_nms3" in f.read()
    if not has_nms:
        return model_dir
    out = tmp_path / name
    out.mkdir()
    return copy_with_nms_inputs_as_outputs(model_dir, str(out))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_converts_float_and_int8_and_onnxruntime_agrees(family, tmp_path, tiny_dataset):
    config, slim_config, overrides = FAMILIES[family]
    exports = build_latency_exports(
        str(tmp_path / "exports"), os.path.join(REPO_ROOT, config),
        os.path.join(REPO_ROOT, slim_config), os.path.join(tiny_dataset, "val"),
        num_images=2, overrides=overrides)

    float_dir = _raw_outputs_export(exports["float"], tmp_path, "float_raw")
    paddle_float = DetectorPredictor(float_dir, "fp32")
    inputs = paddle_float.preprocess(load_image(os.path.join(tiny_dataset, "val",
                                                             "val_00000.png")))
    reference = paddle_float.run_raw(inputs)
    outputs = run_session(ort_session(convert_export(float_dir)), inputs)
    assert [o.shape for o in outputs] == [r.shape for r in reference]
    # Paddle's own two fp32 kernel sets (plain, oneDNN) differ on these deep random
    # networks by up to a few 1e-4 of an output's range: ONNX Runtime is held to that.
    onednn = DetectorPredictor(float_dir, "onednn").run_raw(inputs)
    float_bounds = _bounds(onednn, reference, FLOAT_TOLERANCE)
    float_errors = [relative_error(o, r) for o, r in zip(outputs, reference)]
    assert all(e <= b for e, b in zip(float_errors, float_bounds)), (float_errors,
                                                                     float_bounds)

    int8_dir = _raw_outputs_export(exports["int8"], tmp_path, "int8_raw")
    fake_quant = DetectorPredictor(int8_dir, "fp32").run_raw(inputs)   # QDQ ops in float
    # The project's reference INT8 runtime, for scale: ONNX Runtime may deviate from fake
    # quant as much as Paddle's oneDNN INT8 does (a value on a step boundary lands one step
    # off and the step travels on), or the INT8 tolerance, whichever is larger.
    int8_bounds = _bounds(DetectorPredictor(int8_dir, "int8").run_raw(inputs), fake_quant,
                          INT8_TOLERANCE)
    node_by_node = run_session(ort_session(convert_export(int8_dir), optimize=False), inputs)
    int8 = create_detector(int8_dir, "onnxruntime", "int8")
    report = int8.int8_report
    assert report.int8_convs > 0, report.line()
    # Every conv left float says why: depthwise with a float output (ONNX Runtime has no
    # faster integer kernel for it) or planned float by the export (named from its plan).
    assert set(report.fp32_reasons) == set(report.fp32_convs), report.line()
    planned = [path for path, why in report.fp32_reasons.values() if why.startswith("planned")]
    assert len(planned) == PLANNED_FLOAT_CONVS.get(family, 0), report.line()
    optimized = int8.run_raw(inputs)
    exact_errors = [relative_error(e, r) for e, r in zip(node_by_node, fake_quant)]
    fast_errors = [relative_error(f, r) for f, r in zip(optimized, fake_quant)]
    for errors in (exact_errors, fast_errors):
        assert all(e <= b for e, b in zip(errors, int8_bounds)), (errors, int8_bounds)
    print("{}: float {:.1e} (Paddle oneDNN vs plain {:.1e}); INT8 node by node {:.1e}, "
          "optimized {:.1e} (Paddle oneDNN INT8 {:.1e}) of the range; ONNX Runtime {}".format(
              family, max(float_errors), max(float_bounds) / 2, max(exact_errors),
              max(fast_errors), max(int8_bounds) / 2, report.line()))
