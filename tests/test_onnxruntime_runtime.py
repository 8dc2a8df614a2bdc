"""ONNX Runtime as a runtime of the same exports: boxes like Paddle's, INT8 proven or refused.

ONNX Runtime is an optional runtime but part of the test install (requirements-onnx.txt), so
these tests always run; a machine that leaves it out on purpose sets SLIMEXT_ONNX_ABSENT=1
and keeps only the test of the missing-runtime error.
"""
import json
import os
import sys

import numpy as np
import pytest

from conftest import run_tool, run_tool_ok
from onnx_helpers import ONNX_ABSENT
from slimext.deploy.predictor import DetectorPredictor
from slimext.deploy.preprocess import load_image
from slimext.deploy.runtimes import RUNTIME_PRECISIONS, create_detector

needs_onnx = pytest.mark.skipif(
    ONNX_ABSENT, reason="SLIMEXT_ONNX_ABSENT=1: onnx/onnxruntime left out of this install")


def _val_image(tiny_dataset):
    return load_image(os.path.join(tiny_dataset, "val", "val_00000.png"))


def test_missing_onnxruntime_is_a_clear_error(float_export, monkeypatch):
    from slimext.deploy.onnxruntime_runtime import OnnxRuntimeMissingError

    monkeypatch.setitem(sys.modules, "onnxruntime", None)   # what an uninstalled import sees
    with pytest.raises(OnnxRuntimeMissingError, match="requirements-onnx.txt"):
        create_detector(float_export, "onnxruntime", "fp32")


def test_onnxruntime_offers_fp32_and_int8():
    assert RUNTIME_PRECISIONS["onnxruntime"] == ("fp32", "int8")
    with pytest.raises(ValueError, match="not offered by onnxruntime"):
        create_detector("unused", "onnxruntime", "onednn")


@needs_onnx
def test_float_boxes_equal_paddle_inference(float_export, tiny_dataset):
    image = _val_image(tiny_dataset)
    detector = create_detector(float_export, "onnxruntime", "fp32")
    # Idle ORT threads must not spin: they took the CPU from the runtime timed next (Paddle
    # oneDNN INT8 on PicoDet-S 320 went from 22 to 60 ms beside spinning ORT sessions).
    options = detector.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    ort_boxes = detector.predict(image).boxes
    pd_boxes = DetectorPredictor(float_export, "fp32").predict(image).boxes
    assert len(ort_boxes) == len(pd_boxes) > 0
    # Scores sorted, not rows: which of two tied boxes NMS keeps depends on 1e-7 (see
    # tests/test_openvino_runtime.py); the raw outputs are compared in test_onnx_export.
    np.testing.assert_allclose(np.sort(ort_boxes[:, 1]), np.sort(pd_boxes[:, 1]), atol=1e-4)
    assert set(ort_boxes[:, 0]) == set(pd_boxes[:, 0])


@needs_onnx
def test_qdq_export_runs_int8_kernels_close_to_paddle_int8(qdq_export, tiny_dataset):
    image = _val_image(tiny_dataset)
    detector = create_detector(qdq_export, "onnxruntime", "int8")
    report = detector.int8_report
    assert report.runtime == "onnxruntime" and report.int8_convs > 0
    assert report.int8_convs + len(report.fp32_convs) == report.convs
    ort_boxes = detector.predict(image).boxes
    pd_boxes = DetectorPredictor(qdq_export, "int8").predict(image).boxes
    assert len(ort_boxes) > 0 and len(pd_boxes) > 0
    top = min(len(ort_boxes), len(pd_boxes), 10)
    np.testing.assert_allclose(np.sort(ort_boxes[:, 1])[-top:],
                               np.sort(pd_boxes[:, 1])[-top:], atol=0.05)


@needs_onnx
def test_float_export_forced_to_int8_is_an_error(float_export):
    from slimext.deploy.int8_kernels import Int8NotUsedError

    with pytest.raises(Int8NotUsedError, match=r"float export .*0 of \d+ convs"):
        create_detector(float_export, "onnxruntime", "int8")


@needs_onnx
def test_openvino_reads_the_onnx_too(float_export, tiny_dataset):
    pytest.importorskip("openvino", reason="OpenVINO left out of this install")
    image = _val_image(tiny_dataset)
    ov_boxes = create_detector(float_export, "openvino", "fp32", from_onnx=True) \
        .predict(image).boxes
    pd_boxes = DetectorPredictor(float_export, "fp32").predict(image).boxes
    assert len(ov_boxes) == len(pd_boxes) > 0
    np.testing.assert_allclose(np.sort(ov_boxes[:, 1]), np.sort(pd_boxes[:, 1]), atol=1e-3)


@needs_onnx
def test_infer_runs_onnxruntime(qdq_export, tiny_dataset, tmp_path):
    result = run_tool(["tools/infer.py", "--model_dir", qdq_export, "--runtime", "onnxruntime",
                       "--precision", "int8", "--output_dir", str(tmp_path),
                       "--image_file", os.path.join(tiny_dataset, "val", "val_00000.png")])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "INT8 kernels: " in result.stdout and "[onnxruntime]" in result.stdout
    assert os.path.isfile(str(tmp_path / "val_00000.png"))


@needs_onnx
def test_deploy_bench_includes_onnxruntime(float_export, qdq_export, tmp_path):
    import onnxruntime

    out = tmp_path / "bench.json"
    run_tool_ok(["tools/deploy_bench.py", "--model_dir", float_export, qdq_export,
                 "--runtimes", "onnxruntime", "--runs", "3", "--warmup", "1",
                 "--json", str(out)])
    data = json.loads(out.read_text())
    assert [r["label"] for r in data["rows"]] == ["ONNX Runtime fp32", "ONNX Runtime INT8"]
    assert data["machine"]["onnxruntime"] == onnxruntime.__version__
    assert data["rows"][1]["int8_kernels"]["int8_convs"] > 0
