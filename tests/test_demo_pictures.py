"""The demo's pictures (detection grid, bar chart) and its report, which links and explains them."""
import os
import re

import numpy as np

from slimext.deploy.predictor import Detections
from slimext.deploy.visualize import class_colour, detection_grid, metrics_chart, write_png
from slimext.demo_report import render_markdown, runtime_advice

LABELS = ["circle", "square", "triangle"]
THRESHOLD = 0.4


def _image(value=40):
    return np.full((192, 192, 3), value, np.uint8)


def _detections(*rows):
    return Detections(np.array(rows, dtype=np.float32).reshape(-1, 6), LABELS)


def _examples():
    """Two images: each model has one detection above the threshold and one below it."""
    float_dets = _detections([0, 0.91, 20, 30, 80, 90], [1, 0.2, 100, 100, 150, 150])
    int8_dets = _detections([0, 0.45, 22, 31, 81, 92], [2, 0.39, 100, 100, 150, 150])
    return [(_image(), [(0, 20, 30, 60, 60)], LABELS,
             [("float", float_dets), ("INT8", int8_dets)]),
            (_image(200), [(2, 100, 100, 50, 50)], LABELS,
             [("float", _detections([2, 0.77, 100, 100, 150, 150])),
              ("INT8", _detections([2, 0.5, 99, 101, 151, 149]))])]


def test_grid_draws_every_detection_above_the_threshold_and_none_below():
    examples = _examples()
    grid, drawn = detection_grid(examples, THRESHOLD, scale=2)
    expected = [[int((d.boxes[:, 1] >= THRESHOLD).sum()) for _, d in columns]
                for _, _, _, columns in examples]
    assert drawn == expected == [[1, 1], [1, 1]]
    assert grid.shape[1] == 3 * 192 * 2 + 2 * 6  # ground truth, float, INT8 side by side


def test_grid_cell_shows_the_box_in_its_class_colour():
    grid, _ = detection_grid(_examples()[:1], THRESHOLD, scale=2)
    title, cell_width = 22, 192 * 2 + 6
    float_cell = grid[title:title + 384, cell_width:cell_width + 384]
    colour = np.array(class_colour(0)[::-1])  # class_colour is BGR, the grid RGB
    left_edge = float_cell[100:170, 40]      # x1=20 at scale 2, between y1 and y2
    assert (np.abs(left_edge.astype(int) - colour).sum(axis=1) < 3).all()
    # The 0.2 square (x 200..300 at scale 2) is below the threshold: its area stays plain.
    assert (float_cell[210:290, 200] == 40).all()


def _report_with_pictures(folder):
    grid, drawn = detection_grid(_examples(), THRESHOLD)
    write_png(grid, os.path.join(folder, "detections.png"))
    inference = {"float/fp32": {"mAP": 0.61, "mAP50": 0.9, "latency_ms": 30.0,
                                "latency_runs": 5, "cpu_threads": 2},
                 "float/onednn": {"mAP": 0.61, "mAP50": 0.9, "latency_ms": 11.0,
                                  "latency_runs": 5, "cpu_threads": 2},
                 "int8/onednn": {"mAP": 0.60, "mAP50": 0.9, "latency_ms": 12.0,
                                 "latency_runs": 5, "cpu_threads": 2}}
    metrics_chart([("float (dygraph)", 0.61, None)] +
                  [(k, v["mAP"], v["latency_ms"]) for k, v in inference.items()],
                  os.path.join(folder, "metrics.png"))
    return {"settings": {"config": "c.yml", "epochs": 1, "cpu_threads": 2},
            "dygraph": {"mAP": 0.61, "mAP50": 0.9}, "inference": inference,
            "machine": {"cpu": "Test CPU", "isa": ["avx2"], "int8_hardware": "none",
                        "cores": 2, "paddle": "2.6.2"},
            "pictures": {"grid": "detections.png", "chart": "metrics.png",
                         "threshold": THRESHOLD, "boxes_drawn": drawn,
                         "columns": ["ground truth", "float", "INT8"]}}


def test_report_embeds_pictures_with_links_that_resolve_beside_it(tmp_path):
    text = render_markdown(_report_with_pictures(str(tmp_path)))
    (tmp_path / "report.md").write_text(text)
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links == ["detections.png", "metrics.png"]
    for link in links:
        assert not os.path.isabs(link)
        with open(os.path.join(str(tmp_path), link), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "score >= 0.4" in text


def _latencies(onednn, int8):
    return {"float/fp32": {"mAP": 0.6, "latency_ms": 30.0},
            "float/onednn": {"mAP": 0.6, "latency_ms": onednn},
            "int8/onednn": {"mAP": 0.59, "latency_ms": int8}}


def test_advice_names_vnni_when_int8_is_faster():
    machine = {"isa": ["avx2", "avx512f", "avx512_vnni"], "int8_hardware": "vnni"}
    text = " ".join(runtime_advice(_latencies(16.0, 10.0), machine))
    assert "Fastest here: **int8/onednn**" in text
    assert "INT8 is 1.6x faster than oneDNN fp32" in text and "AVX-512 VNNI" in text
    assert "Ship the INT8 model" in text


def test_advice_says_what_to_ship_when_int8_is_slower_without_vnni():
    machine = {"isa": ["avx2"], "int8_hardware": "none"}
    text = " ".join(runtime_advice(_latencies(21.7, 43.8), machine, {"float": 1.9,
                                                                    "int8": 0.9}))
    assert "Fastest here: **float/onednn**" in text
    assert "INT8 is slower than oneDNN fp32 (43.8 vs 21.7 ms" in text
    assert "no VNNI or AMX (AVX2 only)" in text
    assert "Ship the float model with oneDNN fp32" in text
    assert "oneDNN fp32 is 1.4x faster than plain fp32" in text


def _bench_row(label, kind, median_ms, runtime="openvino"):
    row = {"label": label, "kind": kind, "runtime": runtime, "median_ms": median_ms,
           "p90_ms": median_ms * 1.1, "runs": 20}
    if kind == "int8":
        row["int8_kernels"] = {"int8_convs": 98, "convs": 98}
    return row


def test_report_takes_the_fastest_runtime_and_the_real_size_ratio_from_the_bench_rows():
    machine = {"isa": ["avx2", "avx512f", "avx512_vnni"], "int8_hardware": "vnni",
               "cpu": "test CPU", "cores": 2, "paddle": "3.3.1"}
    bench = {"isa_line": "test CPU | avx512_vnni", "load_average": 0.3,
             "recommendation": "INT8 gives no speed-up here; ship OpenVINO fp32",
             "rows": [_bench_row("Paddle oneDNN fp32", "fp32", 13.0, "paddle"),
                      _bench_row("OpenVINO fp32", "fp32", 5.0),
                      _bench_row("Paddle oneDNN INT8", "int8", 14.0, "paddle"),
                      _bench_row("OpenVINO INT8", "int8", 5.1),
                      {"label": "ONNX Runtime INT8", "kind": "int8", "runtime": "onnxruntime",
                       "error": "ImportError: not installed"}]}
    real_size = dict(bench, model="PicoDet-S LCNet 320 (80 classes)", calibration_images=8,
                     rows=[_bench_row("OpenVINO fp32", "fp32", 40.0),
                           _bench_row("OpenVINO INT8", "int8", 24.0)])
    inference = {label: dict(r, mAP50=0.8, latency_runs=20, cpu_threads=2)
                 for label, r in _latencies(13.0, 14.0).items()}
    text = render_markdown({"machine": machine, "inference": inference,
                            "bench": bench, "real_size": real_size})
    # The fastest case over every runtime, not only Paddle's; one verdict on what to ship.
    assert "Fastest here: **OpenVINO fp32** on the float export at 5.0 ms" in text
    assert "so what to ship below is fp32" not in text   # the fastest is fp32 already
    assert "Ship the float model with oneDNN fp32" not in text
    assert "ship OpenVINO fp32" in text
    assert "| float | Paddle oneDNN fp32 | 13.0 ms | 14.3 ms | 2.60x | - |" in text
    assert "| INT8 QDQ | OpenVINO INT8 | 5.1 ms | 5.6 ms | 1.02x | 98 of 98 convs |" in text
    assert "| INT8 QDQ | ONNX Runtime INT8 | failed |  |  | ImportError: not installed |" in text
    assert "Best INT8 / best fp32 here: **0.60**." in text
    assert "the best INT8 takes 0.60x the best fp32's time on this CPU: INT8 pays there" in text


def test_two_classes_on_one_object_both_keep_a_readable_label():
    import cv2

    from slimext.deploy.visualize import draw_detections

    drawn = draw_detections(_image(), _detections([1, 0.72, 50, 60, 120, 130],
                                                  [0, 0.55, 51, 61, 121, 131]), THRESHOLD)
    def size(text):
        return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)[0]

    (w1, h1), (w2, _) = size("square 0.72"), size("circle 0.55")
    first_top, second_top = 60 - (h1 + 3), 61 + 1   # above the box; inside the second's top
    # The last column of each label's filled background (right of its text).
    assert tuple(drawn[first_top + 1, 50 + w1 + 1]) == class_colour(1)[::-1]
    assert tuple(drawn[second_top + 1, 51 + w2 + 1]) == class_colour(0)[::-1]


def test_fastest_int8_too_close_to_fp32_says_why_fp32_is_shipped():
    machine = {"isa": ["avx512_vnni"], "int8_hardware": "vnni"}
    rows = [_bench_row("ONNX Runtime fp32", "fp32", 7.6), _bench_row("OpenVINO INT8", "int8", 7.3)]
    text = " ".join(runtime_advice(_latencies(30.0, 30.4), machine, bench_rows=rows))
    assert "Fastest here: **OpenVINO INT8** on the INT8 export at 7.3 ms per image, of every " \
           "runtime timed below (only 1.04x the best fp32: INT8 has to be 1.1x faster to be " \
           "worth its accuracy risk, so what to ship below is fp32)." in text
