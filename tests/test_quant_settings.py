"""quant_config: every key, type and range checked, with one line naming the fix."""
import pytest

from conftest import DEMO_CONFIG, REPO_ROOT, run_tool
from slimext.quant import PTQCalibrator, QATQuantizer
from slimext.quant.settings import DEFAULT_QUANT_CONFIG, QuantConfigError, check_quant_config


def test_defaults_pass_and_come_back_merged():
    assert check_quant_config(None) == DEFAULT_QUANT_CONFIG
    assert check_quant_config({"weight_bits": 4})["weight_bits"] == 4


@pytest.mark.parametrize("raw, words", [
    ({"weight_bit": 8}, ["unknown key(s) weight_bit", "did you mean weight_bits",
                         "known keys are weight_quantize_type"]),
    ({"weight_bits": 32}, ["weight_bits", "integer from 2 to 16", "32"]),
    ({"activation_bits": "8"}, ["activation_bits", "integer"]),
    ({"activation_bits": True}, ["activation_bits", "integer"]),
    ({"moving_rate": 1.5}, ["moving_rate", "between 0 and 1"]),
    ({"weight_quantize_type": "kl"}, ["weight_quantize_type", "channel_wise_abs_max"]),
    ({"activation_preprocess_type": "pact"}, ["activation_preprocess_type", "PACT"]),
    ({"quantizable_layer_type": ["Conv"]}, ["quantizable_layer_type", "Conv2D"]),
    ({"quantizable_layer_type": "Conv2D"}, ["quantizable_layer_type", "list"]),
    ({"onnx_format": False}, ["onnx_format", "conflicts", "QDQ", "remove onnx_format"]),
    ({"window_size": 100}, ["window_size", "range_abs_max", "remove it"]),
    ({"dtype": "uint8"}, ["dtype", "int8"]),
    ({"fuse_conv_bn": True}, ["fuse_conv_bn", "False"]),
    ("weight_bits: 8", ["mapping"]),
])
def test_bad_keys_and_values_name_the_fix(raw, words):
    with pytest.raises(QuantConfigError) as error:
        check_quant_config(raw)
    message = str(error.value)
    assert message.startswith("quant_config: ") and "\n" not in message
    for word in words:
        assert word in message


def test_both_methods_check_before_any_model_work():
    with pytest.raises(QuantConfigError, match="onnx_format"):
        QATQuantizer(quant_config={"onnx_format": False})
    with pytest.raises(QuantConfigError, match="unknown key"):
        PTQCalibrator(quant_config={"bits": 8})
    with pytest.raises(ValueError, match="strict must be true or false"):
        QATQuantizer(strict="yes")


def _slim_config(tmp_path, quant_config_line):
    path = tmp_path / "slim.yml"
    path.write_text("slim: ResidualQAT\nResidualQAT:\n  backend: onednn\n"
                    "  quant_config: {}\n".format(quant_config_line))
    return str(path)


@pytest.mark.parametrize("quant_config, words", [
    ("{weight_bitz: 8}", ["unknown key(s) weight_bitz", "did you mean weight_bits"]),
    ("{weight_bits: 8, onnx_format: false}", ["onnx_format", "conflicts"]),
    ("{moving_rate: 2}", ["moving_rate", "between 0 and 1"]),
])
def test_train_cli_stops_on_a_bad_quant_config_with_one_line_and_exit_2(
        tmp_path, dataset_overrides, quant_config, words):
    slim = _slim_config(tmp_path, quant_config)
    result = run_tool(["tools/train.py", "-c", DEMO_CONFIG, "--slim_config", slim, "-o"]
                      + dataset_overrides, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: quant_config: ")
    assert "Traceback" not in result.stderr
    for word in words + ["ResidualQAT", slim]:
        assert word in lines[-1]


def test_an_unknown_key_in_the_method_section_is_named_not_dropped(tmp_path):
    from slimext.commands.errors import UserError
    from slimext.commands.slim_config import read_slim_config

    path = tmp_path / "typo.yml"
    path.write_text("slim: ResidualQAT\nResidualQAT:\n  backend: onednn\n  stict: true\n")
    with pytest.raises(UserError) as error:
        read_slim_config(str(path)).check_settings({})
    message = str(error.value)
    assert "unknown key(s) stict (did you mean strict?)" in message
    assert "ResidualQAT takes backend, quant_config" in message and str(path) in message
