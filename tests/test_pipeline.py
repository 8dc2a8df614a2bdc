"""slimext.pipeline and the settings object: typed calls, checks before work, -o winning."""
import inspect
import os

import pytest

from conftest import DEMO_CONFIG, REPO_ROOT
from slimext import pipeline
from slimext.commands.errors import UserError
from slimext.quant.settings import PTQSettings, QuantSettings
from slimext.slim.settings import SECTION_KEYS, SlimSettings, parse_slim_settings

QAT_SLIM = os.path.join(REPO_ROOT, "configs", "slim", "residual_qat",
                        "picodet_demo_residual_qat.yml")
STOCK_QAT_SLIM = os.path.join(REPO_ROOT, "configs", "slim", "quant", "picodet_demo_qat.yml")


def test_dotted_overrides_nest_as_on_the_command_line():
    nested = pipeline.nested_overrides({"epoch": 2, "TrainReader.batch_size": 4,
                                        "TrainReader.shuffle": False,
                                        "LearningRate": {"base_lr": 0.1}})
    assert nested == {"epoch": 2, "TrainReader": {"batch_size": 4, "shuffle": False},
                      "LearningRate": {"base_lr": 0.1}}
    with pytest.raises(UserError, match="also set to a value"):
        pipeline.nested_overrides({"epoch": 2, "epoch.x": 3})


def test_the_section_keys_are_the_slim_classes_parameters():
    # ppdet passes a slim class only the keys its __init__ names; the parser checks the same.
    from slimext.slim.residual_ptq import ResidualPTQ
    from slimext.slim.residual_qat import ResidualQAT

    for cls in (ResidualQAT, ResidualPTQ):
        names = tuple(p for p in inspect.signature(cls.__init__).parameters if p != "self")
        assert names == SECTION_KEYS[cls.__name__]


def test_a_section_is_parsed_once_into_one_settings_object():
    qat = parse_slim_settings("ResidualQAT", {"backend": "tensorrt", "monitor": True,
                                              "rules": [{"match": "head*", "weight_bits": 16}]})
    assert isinstance(qat, SlimSettings) and type(qat.quant) is QuantSettings
    assert qat.quant.backend == "tensorrt" and qat.quant.rules[0]["weight_bits"] == 16
    assert qat.monitor.every_n_steps == 20 and qat.print_plan is True
    assert qat.quant.quant_config["weight_bits"] == 8  # PaddleSlim's defaults merged in
    ptq = parse_slim_settings("ResidualPTQ", {"algo": "kl", "print_plan": False})
    assert isinstance(ptq.quant, PTQSettings) and ptq.quant.algo == "KL"
    assert ptq.quant.algo_config and ptq.print_plan is False
    with pytest.raises(ValueError, match="did you mean backend"):
        parse_slim_settings("ResidualQAT", {"backnd": "onednn"})
    with pytest.raises(ValueError, match="monitor"):
        parse_slim_settings("ResidualPTQ", {"monitor": True})  # PTQ does not train
    with pytest.raises(ValueError, match="input_shape"):
        parse_slim_settings("ResidualQAT", {"input_shape": [3, 320, 320]})


def test_the_slim_class_built_from_settings_equals_the_one_ppdet_builds():
    from ppdet.core.workspace import create, load_config

    from slimext.slim.build import slim_object

    load_config(DEMO_CONFIG)
    load_config(QAT_SLIM)
    by_ppdet = create("ResidualQAT")
    from slimext.commands.slim_config import read_slim_config

    by_settings = slim_object(read_slim_config(QAT_SLIM).settings())
    assert by_ppdet.settings == by_settings.settings
    assert by_ppdet.quant_config == by_settings.quant_config


def test_a_pipeline_call_checks_its_input_before_any_work(tmp_path, ppdet_workspace):
    with pytest.raises(UserError, match="not found"):
        pipeline.export(DEMO_CONFIG, str(tmp_path / "no_such_weights"), str(tmp_path))
    with pytest.raises(UserError, match="epoch"):
        pipeline.train(DEMO_CONFIG, output_dir=str(tmp_path), overrides={"epoch": "abc"})
    with pytest.raises(UserError, match="unknown -o key"):
        pipeline.train(DEMO_CONFIG, output_dir=str(tmp_path), overrides={"epochs": 3})
    with pytest.raises(UserError, match="post_quant"):
        pipeline.export(DEMO_CONFIG, None, str(tmp_path), slim_config=os.path.join(
            REPO_ROOT, "configs", "slim", "residual_ptq", "picodet_demo_residual_ptq.yml"))
    assert os.listdir(str(tmp_path)) == []   # nothing was written


@pytest.mark.parametrize("slim_source", [QAT_SLIM, STOCK_QAT_SLIM])
def test_the_users_pretrain_weights_win_over_the_slim_yaml(tmp_path, ppdet_workspace,
                                                          trained_weights, dataset_overrides,
                                                          slim_source):
    """A slim YAML naming download URLs for its weights (as PaddleDetection's do): the
    user's -o pretrain_weights is the file loaded, before the model is quantized."""
    from slimext.compat.ppdet_hooks import pretrain_loader_replaced
    from slimext.slim.build import build_slim_model

    slim = tmp_path / "with_url.yml"
    with open(slim_source) as f:
        slim.write_text(f.read() + "\npretrain_weights: https://example.invalid/model.pdparams\n")
    loaded = []

    def recording(original):
        def load(model, path):
            loaded.append(path)
            return original(model, path)
        return load

    overrides = dict(item.split("=", 1) for item in dataset_overrides)
    cfg, opt = pipeline._load(DEMO_CONFIG, dict(overrides, pretrain_weights=trained_weights),
                              str(slim), mode="train")
    with pretrain_loader_replaced(recording):
        cfg = build_slim_model(cfg, str(slim), mode="train", overrides=opt,
                               check_coverage=False)
    assert loaded == [trained_weights]
    assert cfg.pretrain_weights == trained_weights


def test_training_prints_the_plan_table_other_runs_its_summary(ppdet_workspace, caplog):
    import logging

    from ppdet.core.workspace import create, load_config

    from slimext.commands.slim_config import read_slim_config
    from slimext.slim.build import slim_object

    load_config(DEMO_CONFIG)
    settings = read_slim_config(QAT_SLIM).settings()
    lines = {}
    for how in (None, "summary", False):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            slim_object(settings)(create("PicoDet"), check_coverage=False, print_plan=how)
        lines[how] = [r.getMessage() for r in caplog.records if "Quantization plan" in
                      r.getMessage()]
    assert len(lines[None]) == 1 and "join quantizer" in lines[None][0]  # the table
    assert len(lines["summary"]) == 1 and "join quantizer" not in lines["summary"][0]
    assert "tools/quant_plan.py" in lines["summary"][0]
    assert lines[False] == []


def test_a_slim_yaml_section_keeps_the_configs_other_keys_known(ppdet_workspace):
    # The demo QAT config sets PicoHeadV2.static_assigner_epoch only; nms stays a known key.
    cfg, _ = pipeline._load(DEMO_CONFIG, {"PicoHeadV2.nms.score_threshold": 0.0}, QAT_SLIM,
                            mode="test")
    assert cfg["PicoHeadV2"]["nms"]["score_threshold"] == 0.0
    with pytest.raises(UserError, match="did you mean PicoHeadV2.nms.score_threshold"):
        pipeline._load(DEMO_CONFIG, {"PicoHeadV2.nms.score_threshol": 0.0}, QAT_SLIM,
                       mode="test")


@pytest.mark.parametrize("image_shape", [[3, 192, 160], [1, 3, 192, 160]])
def test_the_join_trace_uses_the_test_readers_shape_in_either_form(image_shape,
                                                                  ppdet_workspace):
    from slimext.slim.residual_qat import _configured_input_shape

    ppdet_workspace.load_config(DEMO_CONFIG)
    ppdet_workspace.global_config["TestReader"]["inputs_def"]["image_shape"] = image_shape
    assert _configured_input_shape() == [1, 3, 192, 160]
