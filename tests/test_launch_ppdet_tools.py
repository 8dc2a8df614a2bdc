"""PaddleDetection's own tool scripts through `python -m slimext.launch` get slimext's weight
check (same report, same policy, -o WeightCheck honoured) and a one-line hint for use_gpu on
a CPU build. The scripts under tests/ppdet_tools/ have the structure of v2.6 and v2.7/develop
tools/train.py."""
import os
import subprocess
import sys

import pytest

from matcher_helpers import DEMO, L320, REPO, build, save

TOOLS = os.path.join(REPO, "tests", "ppdet_tools")
SCRIPTS = ["train_v26.py", "train_v27.py"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("launch")
    demo = root / "demo"
    subprocess.run([sys.executable, "-m", "slimext.data.demo", "--out", str(demo), "--train",
                    "8", "--val", "4"], check=True, cwd=REPO, capture_output=True)
    return {"root": root, "demo": str(demo),
            "wide_weights": save(build(L320), str(root / "picodet_l.pdparams"))}


def launch(script, files, tmp_path, *opts):
    command = [sys.executable, "-m", "slimext.launch", os.path.join(TOOLS, script), "-c", DEMO,
               "-o", "TrainDataset.dataset_dir=" + files["demo"], "epoch=1",
               "TrainReader.batch_size=4", "save_dir=" + str(tmp_path / "out")] + list(opts)
    # From a folder outside the repository, as a user runs their own checkout's tools.
    return subprocess.run(command, cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("script", SCRIPTS)
def test_wrong_weights_stop_before_any_step_with_one_report(script, files, tmp_path):
    result = launch(script, files, tmp_path, "pretrain_weights=" + files["wide_weights"])
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert "Verdict: ERROR" in output and "picodet_l_320_coco_lcnet.yml" in output
    assert "Error: weights" in result.stderr and "Traceback" not in result.stderr
    assert "is unmatched" not in output and "Epoch:" not in output
    assert not (tmp_path / "out").exists()


def test_weight_check_policy_from_o_is_honoured(files, tmp_path):
    result = launch("train_v26.py", files, tmp_path, "pretrain_weights=" + files["wide_weights"],
                    "WeightCheck.on_mismatch=warn")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Verdict: WARN" in output and "Epoch: [0]" in output
    assert "is unmatched" not in output


def test_use_gpu_on_a_cpu_build_gets_a_one_line_hint(files, tmp_path):
    import paddle

    assert not paddle.is_compiled_with_cuda()  # the case this test is about
    result = launch("train_v27.py", files, tmp_path, "use_gpu=true")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: the config asks for a GPU (use_gpu: true, PaddleDetection's runtime.yml "
        "default) but this Paddle is a CPU build: add -o use_gpu=false")
    assert "Traceback" not in result.stderr


def test_ppdet_27_semi_supervised_loads_go_to_ppdets_loader(monkeypatch):
    # ppdet >= 2.7 calls load_pretrain_weight(model, path, ARSL_eval); that layout is ppdet's.
    import importlib

    from slimext.matcher import CheckpointError
    from slimext.matcher.loading import checked_ppdet_weight_loading

    calls = []
    for name in ("ppdet.slim", "ppdet.engine.trainer"):
        monkeypatch.setattr(importlib.import_module(name), "load_pretrain_weight",
                            lambda *args: calls.append(args))
    trainer_module = importlib.import_module("ppdet.engine.trainer")
    model = paddle_linear()
    with checked_ppdet_weight_loading():
        trainer_module.load_pretrain_weight(model, "teacher_student.pdparams", True)
        assert calls == [(model, "teacher_student.pdparams", True)]
        with pytest.raises(CheckpointError):  # an ordinary load is checked
            trainer_module.load_pretrain_weight(model, "missing.pdparams", False)


def paddle_linear():
    import paddle

    return paddle.nn.Linear(2, 2)


def test_the_tools_o_wins_over_a_slim_yamls_pretrain_weights(files, tmp_path):
    # PaddleDetection's slim YAMLs name download URLs; ppdet's build_slim_model loads the
    # slim YAML's value before the tool's -o is applied again. Through the launcher the
    # user's file is the one checked (and refused here: it is a wider PicoDet).
    slim = tmp_path / "qat_with_url.yml"
    with open(os.path.join(REPO, "configs", "slim", "residual_qat",
                           "picodet_demo_residual_qat.yml")) as f:
        slim.write_text(f.read() + "\npretrain_weights: https://example.invalid/w.pdparams\n")
    result = launch("train_v26.py", files, tmp_path, "pretrain_weights=" + files["wide_weights"],
                    "--slim_config", str(slim))
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert "Verdict: ERROR" in output and files["wide_weights"] in output
    assert "example.invalid" not in output and "Traceback" not in result.stderr
