"""tools/infer.py and the end-to-end demo, run as a user runs them."""
import json
import os
import re

from conftest import run_tool_ok


def test_infer_writes_pngs_and_prints_detections(float_export, tiny_dataset, tmp_path):
    result = run_tool_ok(["tools/infer.py", "--model_dir", float_export, "--image_dir",
                          os.path.join(tiny_dataset, "val"), "--output_dir", str(tmp_path),
                          "--threshold", "0.0", "--precision", "onednn"])
    assert sorted(os.listdir(tmp_path)) == ["val_{:05d}.png".format(i) for i in range(8)]
    assert "val_00000.png: " in result.stdout and " detections" in result.stdout


def test_quick_demo_writes_report(tmp_path):
    workdir = tmp_path / "demo"
    result = run_tool_ok(["-m", "slimext.demo", "--workdir", str(workdir), "--quick"])
    assert "[demo] done" in result.stdout
    with open(workdir / "report.json") as f:
        report = json.load(f)
    assert {"float/fp32", "float/onednn"} <= set(report["inference"])  # later stages add more
    for entry in report["inference"].values():
        assert entry["latency_ms"] > 0 and 0.0 <= entry["mAP"] <= 1.0
    assert 0.0 <= report["dygraph"]["mAP"] <= 1.0
    assert report["model_size_mb"]["float"] > 0.5
    assert (workdir / "detections.png").is_file() and (workdir / "report.md").is_file()
    # The picture grid has a row per val image and a column per model; report links resolve.
    pictures = report["pictures"]
    assert pictures["columns"] == ["ground truth", "float, oneDNN fp32", "INT8, oneDNN"]
    assert len(pictures["boxes_drawn"]) == 4
    text = (workdir / "report.md").read_text()
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (workdir / link).is_file(), link
    assert "](detections.png)" in text and "](metrics.png)" in text
    assert "## Which runtime to use on this machine" in text
    # Latencies come from one interleaved run of both exports, with deploy_bench's verdict.
    assert all(report["inference"][k].get("interleaved") for k in ("float/onednn",
                                                                    "int8/onednn"))
    assert "`tools/deploy_bench.py` on both exports:" in text
    # The INT8 run says, in one line, which kernels really ran INT8.
    assert re.search(r"int8/onednn: INT8 kernels: \d+ of \d+ convs", text), text[-1500:]
    # Every installed runtime is timed side by side, on the demo model and at a real size
    # (PicoDet-S 320), each INT8 row proving its INT8 kernels.
    for section in ("bench", "real_size"):
        rows = report[section]["rows"]
        assert {r["runtime"] for r in rows} == {"paddle", "openvino", "onnxruntime"}, rows
        assert all("median_ms" in r for r in rows), [r.get("error") for r in rows]
        assert all(r["int8_kernels"]["int8_convs"] > 0 for r in rows if r["kind"] == "int8")
    assert "## Every runtime, side by side (demo model)" in text
    assert "## At a real size: PicoDet-S LCNet 320 (80 classes)" in text
    assert re.search(r"Best INT8 / best fp32 here: \*\*\d\.\d\d\*\*", text), text
    # Progress bars are for terminals: a piped run shows stage lines only.
    assert "stage 2/14: train done in" in result.stdout and "epoch 1/1" not in result.stdout
