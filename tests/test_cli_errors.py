"""Bad input ends a tool with exit status != 0 and exactly one `Error:` line, no traceback."""
from conftest import DEMO_CONFIG, run_tool


def assert_one_error_line(result, *words):
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in errors[0], errors[0]


def test_missing_config():
    result = run_tool(["tools/train.py", "-c", "configs/picodet/no_such_config.yml"])
    assert_one_error_line(result, "no_such_config.yml", "does not exist")


def test_missing_dataset_dir():
    result = run_tool(["tools/train.py", "-c", DEMO_CONFIG,
                       "-o", "TrainDataset.dataset_dir=/nonexistent/demo"])
    assert_one_error_line(result, "/nonexistent/demo", "dataset_dir")


def test_unknown_override_key(dataset_overrides):
    result = run_tool(["tools/train.py", "-c", DEMO_CONFIG, "-o", "epochs=3"]
                      + dataset_overrides)
    assert_one_error_line(result, "epochs", "did you mean epoch")


def test_missing_weights_for_eval(dataset_overrides, tmp_path):
    missing = str(tmp_path / "no_model")
    result = run_tool(["tools/eval.py", "-c", DEMO_CONFIG, "-o", "weights=" + missing]
                      + dataset_overrides)
    assert_one_error_line(result, "no_model.pdparams", "not found")


def test_missing_weights_for_export(dataset_overrides, tmp_path):
    result = run_tool(["tools/export_model.py", "-c", DEMO_CONFIG, "--output_dir",
                       str(tmp_path), "-o", "weights=" + str(tmp_path / "none")]
                      + dataset_overrides)
    assert_one_error_line(result, "none.pdparams")


def test_infer_missing_model_dir(tiny_dataset, tmp_path):
    result = run_tool(["tools/infer.py", "--model_dir", str(tmp_path / "absent"),
                       "--image_file", tiny_dataset + "/val/val_00000.png"])
    assert_one_error_line(result, "absent", "does not exist")


def test_infer_missing_image(float_export, tmp_path):
    result = run_tool(["tools/infer.py", "--model_dir", float_export,
                       "--image_file", str(tmp_path / "nope.png")])
    assert_one_error_line(result, "nope.png")


def test_launch_missing_script(tmp_path):
    result = run_tool(["-m", "slimext.launch", str(tmp_path / "train.py")])
    assert_one_error_line(result, "train.py", "does not exist")
