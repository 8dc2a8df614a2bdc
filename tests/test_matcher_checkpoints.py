"""Weight checks on real checkpoints built from the project's configs."""
import os

import numpy as np
import paddle
import pytest

from slimext.matcher import (ERROR, OK, WARN, CheckpointError, WeightCheckFailed,
                             check_weights, load_checked_weights)

from matcher_helpers import L320, REPO, S320, build, quantize, save


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Checkpoint files: PicoDet-S, -L, S with 20 classes, and a QAT-wrapped S."""
    root = tmp_path_factory.mktemp("ckpts")
    return {
        "s": save(build(S320), str(root / "s.pdparams")),
        "l": save(build(L320), str(root / "l.pdparams")),
        "s_20cls": save(build(S320, num_classes=20), str(root / "s_20cls.pdparams")),
        "s_qat": save(quantize(build(S320)), str(root / "s_qat.pdparams")),
    }


@pytest.fixture
def s_model():
    return build(S320, initialize=False)


def test_right_weights_are_ok_and_fully_loaded(ckpts, s_model):
    report = check_weights(s_model, ckpts["s"], target=S320)
    assert report.verdict == OK and report.loaded_ratio == 1.0
    assert report.loaded == report.model_keys == 463 and not report.differences


def test_wider_checkpoint_is_an_error_whose_diagnosis_names_width_and_config(ckpts, s_model):
    report = check_weights(s_model, ckpts["l"], target=S320)
    assert report.verdict == ERROR
    diffs = {label: (cfg, ckpt) for label, cfg, ckpt in report.diagnosis["differences"]}
    assert diffs["backbone width (scale)"] == (0.75, 2.0)
    assert diffs["neck channels"] == (96, 160)
    assert report.diagnosis["matching_configs"] == [
        "configs/picodet/picodet_l_320_coco_lcnet.yml",
        "configs/picodet/picodet_l_416_coco_lcnet.yml"]
    text = report.format_text()
    assert "input size is not stored in weights" in text
    assert "-c configs/picodet/picodet_l_320_coco_lcnet.yml" in text


def test_other_class_count_warns_about_the_head_only(ckpts, s_model):
    report = check_weights(s_model, ckpts["s_20cls"], target=S320)
    assert report.verdict == WARN
    assert report.differences and {d.category for d in report.differences} == {"class_count"}
    assert {d.key.split(".")[1].rstrip("0123456789") for d in report.differences} == {
        "head_cls_list", "head_cls"}
    assert "fine-tuning" in report.format_text()


def test_float_weights_into_qat_model_classify_quantizer_state_as_expected(ckpts):
    report = check_weights(quantize(build(S320, initialize=False)), ckpts["s"])
    assert report.verdict == OK and report.loaded_ratio == 1.0
    assert report.loaded_through_wrapper > 0
    assert {d.category for d in report.differences} == {"quantizer_state"}
    assert all(d.kind == "missing" for d in report.differences)


def test_qat_checkpoint_into_float_model_is_ok(ckpts, s_model):
    report = check_weights(s_model, ckpts["s_qat"])
    assert report.verdict == OK and report.loaded_ratio == 1.0
    assert {(d.kind, d.category) for d in report.differences} == {("unused", "quantizer_state")}


def test_pact_alpha_unused_by_test_mode_qat_model_is_summarized(ckpts):
    report = check_weights(quantize(build(S320, initialize=False), test_mode=True),
                           ckpts["s_qat"])
    assert report.verdict == OK
    unused = [d for d in report.differences if d.kind == "unused"]
    assert unused and all(d.key.endswith("_act_preprocess.alpha") for d in unused)
    assert all(d.category == "quantizer_state" for d in unused)
    assert "Expected (quantizer_state): {} unused".format(len(unused)) in report.format_text()


def test_backbone_only_checkpoint_is_ok(ckpts, s_model):
    state = paddle.load(ckpts["s"], return_numpy=True)
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    backbone["fc.weight"] = np.zeros((1280, 1000), "float32")  # an ImageNet classifier
    report = check_weights(s_model, backbone)
    assert report.verdict == OK and report.loaded_ratio == 1.0
    assert report.ratio_basis == "143 backbone tensors"
    assert {d.category for d in report.differences} == {"backbone_only", "classifier_part"}


def test_optimizer_file_is_an_error_that_says_which_file_to_pass(tmp_path, s_model):
    path = tmp_path / "model.pdopt"
    paddle.save({"conv2d_0.w_0_moment1_0": np.zeros(3, "float32"), "last_epoch": 3}, str(path))
    report = check_weights(s_model, str(path))
    assert report.verdict == ERROR and "pass the .pdparams" in report.reasons[0]


@pytest.mark.parametrize("kind", ["text", "truncated", "missing"])
def test_unusable_file_raises_with_the_fix(kind, tmp_path, ckpts, s_model):
    path = tmp_path / "bad.pdparams"
    if kind == "text":
        path.write_text("num_classes: 80\n")
    elif kind == "truncated":
        data = open(ckpts["s"], "rb").read()
        path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match="pass|re-copy"):
        check_weights(s_model, str(path))


def test_load_checked_weights_loads_values_into_a_qat_model(ckpts):
    model = quantize(build(S320))
    load_checked_weights(model, ckpts["s"])
    expected = paddle.load(ckpts["s"], return_numpy=True)["backbone.conv1.conv.weight"]
    got = model.state_dict()["backbone.conv1.conv._layer.weight"].numpy()
    np.testing.assert_array_equal(got, expected)


def test_load_checked_weights_refuses_on_error_and_loads_nothing(ckpts):
    model = build(S320)
    before = model.state_dict()["head.head_reg_list.0.weight"].numpy().copy()
    with pytest.raises(WeightCheckFailed) as failure:
        load_checked_weights(model, ckpts["l"], target=S320)
    assert failure.value.report.verdict == ERROR
    np.testing.assert_array_equal(model.state_dict()["head.head_reg_list.0.weight"].numpy(),
                                  before)


def test_the_suggested_config_is_one_of_the_users_own(ckpts, s_model, tmp_path, monkeypatch):
    # A PaddleDetection checkout elsewhere, run from its root: the Fix line names its file.
    import shutil

    checkout = tmp_path / "PaddleDetection"
    shutil.copytree(os.path.join(REPO, "configs"), str(checkout / "configs"))
    (checkout / "configs" / "picodet" / "picodet_m_320_coco_lcnet.yml").unlink()
    monkeypatch.chdir(checkout)
    user_config = str(checkout / "configs" / "picodet" / "picodet_s_320_coco_lcnet.yml")
    report = check_weights(s_model, ckpts["l"], target=user_config)
    first = report.diagnosis["matching_configs"][0]
    assert first == os.path.join("configs", "picodet", "picodet_l_320_coco_lcnet.yml")
    assert os.path.isfile(str(checkout / first))
    assert "Fix: train with -c " + first in report.format_text()
    # From a folder outside the checkout the user's file is named by its absolute path.
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    again = check_weights(s_model, ckpts["l"], target=user_config)
    assert again.diagnosis["matching_configs"][0] == str(checkout / first)
