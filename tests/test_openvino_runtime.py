"""OpenVINO on the same exports: numbers of the dygraph model, INT8 with the exported scales.

OpenVINO is an optional runtime but part of the test install (requirements-extra.txt), so
these tests always run. A machine that leaves it out on purpose sets
SLIMEXT_OPENVINO_ABSENT=1 and keeps only the test of the missing-runtime error.
"""
import json
import os
import sys

import numpy as np
import pytest

from conftest import DEMO_CONFIG, run_tool, run_tool_ok
from slimext.deploy.predictor import DetectorPredictor
from slimext.deploy.runtimes import create_detector
from slimext.deploy.preprocess import load_image

OPENVINO_ABSENT = os.environ.get("SLIMEXT_OPENVINO_ABSENT") == "1"
if not OPENVINO_ABSENT:
    try:
        import openvino  # noqa: F401
    except ImportError as error:
        raise ImportError("OpenVINO is part of the test install: pip install -r "
                          "requirements-openvino.txt (or set SLIMEXT_OPENVINO_ABSENT=1 where "
                          "it is left out on purpose)") from error


needs_openvino = pytest.mark.skipif(
    OPENVINO_ABSENT, reason="SLIMEXT_OPENVINO_ABSENT=1: OpenVINO left out of this install")


def _val_image(tiny_dataset):
    return load_image(os.path.join(tiny_dataset, "val", "val_00000.png"))


def test_missing_openvino_is_a_clear_error(float_export, monkeypatch):
    from slimext.deploy.openvino_runtime import OpenVINOMissingError

    monkeypatch.setitem(sys.modules, "openvino", None)   # what `import openvino` sees uninstalled
    with pytest.raises(OpenVINOMissingError, match="requirements-openvino.txt"):
        create_detector(float_export, "openvino", "fp32")


@needs_openvino
def test_raw_head_outputs_match_dygraph(raw_export, trained_weights, tiny_dataset,
                                        ppdet_workspace):
    import paddle
    from ppdet.utils.checkpoint import load_weight

    detector = create_detector(raw_export, "openvino", "fp32")
    inputs = detector.preprocess(_val_image(tiny_dataset))
    outputs = detector.run_raw(inputs)

    model = ppdet_workspace.create(ppdet_workspace.load_config(DEMO_CONFIG).architecture)
    load_weight(model, trained_weights)
    model.eval()
    model.export_post_process = False
    with paddle.no_grad():
        heads = model({"image": paddle.to_tensor(inputs["image"])})["picodet"]
    dygraph = [t.numpy() for group in heads for t in group]
    assert [a.shape for a in outputs] == [a.shape for a in dygraph]
    for ov_out, dy_out in zip(outputs, dygraph):
        np.testing.assert_allclose(ov_out, dy_out, rtol=1e-3, atol=1e-4)

@needs_openvino
def test_final_boxes_equal_paddle_inference(float_export, tiny_dataset):
    image = _val_image(tiny_dataset)
    ov_boxes = create_detector(float_export, "openvino", "fp32").predict(image).boxes
    pd_boxes = DetectorPredictor(float_export, "fp32").predict(image).boxes
    assert len(ov_boxes) == len(pd_boxes) > 0
    # Scores sorted, not boxes: a 1-epoch model scores many anchors alike, and which of
    # the tied boxes NMS keeps depends on 1e-7 differences (the raw outputs are
    # compared with dygraph above).
    np.testing.assert_allclose(np.sort(ov_boxes[:, 1]), np.sort(pd_boxes[:, 1]), atol=1e-4)
    assert set(ov_boxes[:, 0]) == set(pd_boxes[:, 0])

@needs_openvino
def test_qdq_export_runs_int8_kernels_like_paddle_int8(qdq_export, tiny_dataset):
    image = _val_image(tiny_dataset)
    detector = create_detector(qdq_export, "openvino", "int8")
    report = detector.int8_report
    assert report.runtime == "openvino" and report.int8_convs == report.convs > 0
    ov_boxes = detector.predict(image).boxes
    pd_boxes = DetectorPredictor(qdq_export, "int8").predict(image).boxes
    assert len(ov_boxes) > 0 and len(pd_boxes) > 0
    # Both execute the exported scales; rounding order differs slightly.
    top = min(len(ov_boxes), len(pd_boxes), 10)
    np.testing.assert_allclose(np.sort(ov_boxes[:, 1])[-top:],
                               np.sort(pd_boxes[:, 1])[-top:], atol=0.01)

@needs_openvino
def test_float_export_forced_to_int8_is_an_error(float_export):
    from slimext.deploy.int8_kernels import Int8NotUsedError

    with pytest.raises(Int8NotUsedError, match=r"float export .*0 of \d+ convs"):
        create_detector(float_export, "openvino", "int8")

@needs_openvino
def test_infer_runs_openvino(qdq_export, tiny_dataset, tmp_path):
    result = run_tool(["tools/infer.py", "--model_dir", qdq_export, "--runtime", "openvino",
                       "--precision", "int8", "--output_dir", str(tmp_path),
                       "--image_file", os.path.join(tiny_dataset, "val", "val_00000.png")])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "INT8 kernels: " in result.stdout and "[openvino]" in result.stdout
    assert os.path.isfile(str(tmp_path / "val_00000.png"))

@needs_openvino
def test_deploy_bench_includes_openvino(float_export, qdq_export, tmp_path):
    out = tmp_path / "bench.json"
    run_tool_ok(["tools/deploy_bench.py", "--model_dir", float_export, qdq_export,
                 "--runtimes", "openvino", "--runs", "3", "--warmup", "1",
                 "--json", str(out)])
    data = json.loads(out.read_text())
    assert [r["label"] for r in data["rows"]] == ["OpenVINO fp32", "OpenVINO INT8"]
    assert data["machine"]["openvino"] == openvino.get_version()
    assert data["rows"][1]["int8_kernels"]["int8_convs"] > 0
