"""The deploy package on a real export: predictor, precisions, latency, mAP, drawing."""
import os

import cv2
import numpy as np
import pytest

from slimext.deploy.evaluate import evaluate_predictor
from slimext.deploy.latency import measure_latency
from slimext.deploy.predictor import DetectorPredictor
from slimext.deploy.preprocess import Preprocess, load_image
from slimext.deploy.visualize import save_detections_png


@pytest.fixture(scope="module")
def val_image(tiny_dataset):
    return load_image(os.path.join(tiny_dataset, "val", "val_00000.png"))


def test_preprocess_follows_infer_cfg(float_export, val_image):
    predictor = DetectorPredictor(float_export, "fp32")
    inputs = predictor.preprocess(val_image)
    assert inputs["image"].shape == (1, 3, 192, 192) and inputs["image"].dtype == np.float32
    np.testing.assert_allclose(inputs["im_shape"], [[192, 192]])
    np.testing.assert_allclose(inputs["scale_factor"], [[1.0, 1.0]])


def test_resize_scale_factor_maps_back_to_the_original_image():
    steps = [{"type": "Resize", "target_size": [96, 64], "keep_ratio": False, "interp": 2}]
    inputs = Preprocess(steps)(np.zeros((48, 128, 3), np.uint8))
    np.testing.assert_allclose(inputs["scale_factor"], [[96 / 48, 64 / 128]])


def test_unknown_preprocess_step_is_named():
    with pytest.raises(ValueError, match="GridMask"):
        Preprocess([{"type": "GridMask"}])


def test_pad_stride_pads_bottom_right_and_keeps_im_shape():
    image = np.full((50, 70, 3), 255, np.uint8)
    steps = [{"type": "NormalizeImage", "mean": [0, 0, 0], "std": [1, 1, 1]},
             {"type": "Permute"}, {"type": "PadStride", "stride": 32}]
    inputs = Preprocess(steps)(image)
    assert inputs["image"].shape == (1, 3, 64, 96)
    assert (inputs["image"][0, :, :50, :70] == 1.0).all()
    assert not inputs["image"][0, :, 50:, :].any() and not inputs["image"][0, :, :, 70:].any()
    np.testing.assert_allclose(inputs["im_shape"], [[50, 70]])


def test_boxes_are_rows_of_class_score_corners(float_export, val_image):
    detections = DetectorPredictor(float_export, "fp32").predict(val_image)
    boxes = detections.boxes
    assert boxes.ndim == 2 and boxes.shape[1] == 6 and len(boxes) > 0
    assert set(boxes[:, 0].astype(int)) <= {0, 1, 2}
    assert (boxes[:, 1] >= 0).all() and (boxes[:, 1] <= 1).all()
    assert (boxes[:, 4] >= boxes[:, 2]).all() and (boxes[:, 5] >= boxes[:, 3]).all()
    assert detections.labels == ["circle", "square", "triangle"]


def test_onednn_gives_the_fp32_scores(float_export, val_image):
    plain = DetectorPredictor(float_export, "fp32").predict(val_image).boxes
    onednn = DetectorPredictor(float_export, "onednn").predict(val_image).boxes
    assert len(plain) == len(onednn)
    np.testing.assert_allclose(np.sort(plain[:, 1]), np.sort(onednn[:, 1]), atol=1e-4)


def test_unknown_precision_and_missing_files_are_refused(float_export, tmp_path):
    with pytest.raises(ValueError, match="fp16"):
        DetectorPredictor(float_export, "fp16")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DetectorPredictor(str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="has no model.pdmodel"):
        DetectorPredictor(str(tmp_path))


def test_latency_is_median_of_the_timed_runs():
    calls = []
    latency = measure_latency(lambda: calls.append(1), runs=7, warmup=3)
    assert len(calls) == 10 and latency.runs == 7
    assert 0 <= latency.min_ms <= latency.median_ms <= latency.max_ms


def test_predictor_map_is_coco_stats(float_export, tiny_dataset):
    stats = evaluate_predictor(DetectorPredictor(float_export, "fp32"),
                               os.path.join(tiny_dataset, "annotations", "instances_val.json"),
                               os.path.join(tiny_dataset, "val"))
    assert len(stats) == 12 and 0.0 <= stats[0] <= stats[1] <= 1.0


def test_drawn_png_has_the_image_size(float_export, val_image, tmp_path):
    detections = DetectorPredictor(float_export, "fp32").predict(val_image)
    path = save_detections_png(val_image, detections, str(tmp_path / "out.png"), threshold=0.0)
    drawn = cv2.imread(path)
    assert drawn.shape == val_image.shape
    assert not np.array_equal(drawn[:, :, ::-1], val_image)  # boxes were drawn
