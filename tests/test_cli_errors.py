"""Bad input ends a tool with exit status != 0 and exactly one `Error:` line, no traceback."""
import pytest

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


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path):
    config = tmp_path / "broken.yml"
    config.write_text("_BASE_: ['{}']\nepoch: 3\nTrainReader: {{batch_size: 2\n"
                      "weights: x\n".format(DEMO_CONFIG))
    result = run_tool(["tools/train.py", "-c", str(config)])
    assert_one_error_line(result, "broken.yml:", "YAML syntax error")
    assert result.returncode == 2


def test_a_yaml_syntax_error_in_a_slim_config_names_the_file_and_line(tmp_path):
    slim = tmp_path / "slim.yml"
    slim.write_text("slim: ResidualQAT\nResidualQAT:\n  backend: [onednn\n")
    result = run_tool(["tools/train.py", "-c", DEMO_CONFIG, "--slim_config", str(slim)])
    assert_one_error_line(result, "slim.yml:", "YAML syntax error")
    assert result.returncode == 2


def test_a_slim_config_that_names_no_method(tmp_path):
    slim = tmp_path / "no_method.yml"
    base = tmp_path / "base.yml"  # a _BASE_ without `slim:` either
    base.write_text("ResidualQAT: {backend: onednn}\n")
    slim.write_text("_BASE_: ['{}']\nResidualQAT: {{strict: false}}\n".format(base))
    result = run_tool(["tools/train.py", "-c", DEMO_CONFIG, "--slim_config", str(slim)])
    assert_one_error_line(result, "no_method.yml", "slim: ResidualQAT")
    assert result.returncode == 2


@pytest.mark.parametrize("override,words", [
    ("epoch=abc", ["epoch", "a number"]),
    ("TrainReader.batch_size=-1", ["TrainReader.batch_size", "positive integer"]),
    ("LearningRate.base_lr=abc", ["LearningRate.base_lr", "a number"]),
    ("LearningRate.base_lr=0", ["LearningRate.base_lr", "> 0"]),
    ("worker_num=-2", ["worker_num", ">= 0"]),
    ("epoch=2.5", ["epoch", "positive integer"]),
    ("use_gpu=maybe", ["use_gpu", "true or false"]),
])
def test_a_value_ppdet_would_fail_on_later_is_refused_first(override, words, dataset_overrides):
    result = run_tool(["tools/train.py", "-c", DEMO_CONFIG, "-o", override] + dataset_overrides)
    assert_one_error_line(result, *words)
    assert result.returncode == 2


def test_a_tool_prints_no_third_party_import_chatter():
    result = run_tool(["tools/train.py", "-c", "configs/picodet/no_such_config.yml"])
    output = result.stdout + result.stderr
    assert "ccache" not in output and "numba" not in output, output[-2000:]
    assert_one_error_line(result, "no_such_config.yml")
