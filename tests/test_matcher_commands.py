"""tools/check_weights.py and tools/train.py with right and wrong weights (subprocesses)."""
import json
import os
import subprocess
import sys

import pytest

from matcher_helpers import DEMO, REPO, S320, build, save

PY = sys.executable


def run(tool, *args, cwd=None):
    return subprocess.run([PY, os.path.join(REPO, "tools", tool)] + list(args), cwd=cwd,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    demo = root / "demo"
    subprocess.run([PY, "-m", "slimext.data.demo", "--out", str(demo), "--train", "8",
                    "--val", "4"], check=True, cwd=REPO, capture_output=True)
    return {"root": root, "demo": str(demo),
            "demo_weights": save(build(DEMO), str(root / "demo.pdparams")),
            "s_weights": save(build(S320), str(root / "s.pdparams"))}


def test_check_weights_wrong_weights_exit_2_with_report_and_json(files, tmp_path):
    out = tmp_path / "report.json"
    result = run("check_weights.py", "-c", DEMO, "-o", "pretrain_weights=" + files["s_weights"],
                 "--json", str(out))
    assert result.returncode == 2
    assert "Verdict: ERROR" in result.stdout
    assert "configs/picodet/picodet_s_320_coco_lcnet.yml" in result.stdout
    assert json.loads(out.read_text())["verdict"] == "error"


def test_check_weights_right_weights_exit_0(files):
    result = run("check_weights.py", "-c", DEMO, "-o", "weights=" + files["demo_weights"])
    assert result.returncode == 0 and "Verdict: OK" in result.stdout


def test_check_weights_other_class_count_exit_1(files):
    result = run("check_weights.py", "-c", S320, "-o", "pretrain_weights=" + files["s_weights"],
                 "num_classes=20")
    assert result.returncode == 1 and "Verdict: WARN" in result.stdout


@pytest.mark.parametrize("weights, message", [
    ("https://paddledet.bj.bcebos.com/models/picodet_s_320_coco_lcnet.pdparams",
     "cannot be fetched here"),
    ("/nonexistent/model.pdparams", "does not exist"),
])
def test_check_weights_unusable_weights_exit_2_with_the_fix(weights, message):
    result = run("check_weights.py", "-c", S320, "-o", "pretrain_weights=" + weights)
    assert result.returncode == 2 and message in result.stderr
    assert result.stderr.count("Error:") == 1


def test_check_weights_not_a_checkpoint_exit_2(tmp_path):
    bad = tmp_path / "notes.pdparams"
    bad.write_text("not weights")
    result = run("check_weights.py", "-c", S320, "-o", "pretrain_weights=" + str(bad))
    assert result.returncode == 2 and "not a readable Paddle checkpoint" in result.stderr


def _train(files, weights, save_dir):
    return run("train.py", "-c", DEMO, "-o", "pretrain_weights=" + weights,
               "TrainDataset.dataset_dir=" + files["demo"],
               "EvalDataset.dataset_dir=" + files["demo"], "epoch=1",
               "save_dir=" + str(save_dir), cwd=str(files["root"]))


def test_train_with_wrong_weights_stops_before_the_first_step(files, tmp_path):
    result = _train(files, files["s_weights"], tmp_path / "out")
    assert result.returncode == 2
    assert "Verdict: ERROR" in result.stdout and "Error: weights" in result.stderr
    assert "Epoch:" not in result.stdout and not (tmp_path / "out").exists()


def test_train_with_right_weights_logs_one_summary_and_trains(files, tmp_path):
    result = _train(files, files["demo_weights"], tmp_path / "out")
    assert result.returncode == 0, result.stderr[-2000:]
    log = result.stdout
    assert log.count("weight check OK: loaded 463/463") == 1
    assert "is unmatched" not in log and "not used" not in log
    assert "Epoch: [0]" in log
