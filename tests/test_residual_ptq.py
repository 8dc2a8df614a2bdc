"""ResidualPTQ: calibration algorithms, scales written into the plan's quantizers, INT8 export."""
import json
import os

import numpy as np
import paddle
import pytest

from conftest import DEMO_CONFIG, REPO_ROOT, run_tool
from quant_models import ResidualNet, example_input, train_steps
from test_cli_errors import assert_one_error_line
from test_residual_qat_export import INPUT_SPEC, run_int8
from slimext.compat.tracing import export_tracing
from slimext.quant import validate_saved_model
from slimext.quant.calibration import ALGORITHMS, CalibrationError, make_calibrator
from slimext.quant.ptq import PTQCalibrator
from slimext.quant.quantizers import all_quantizers

PTQ_SLIM = "configs/slim/residual_ptq/picodet_demo_residual_ptq.yml"


def calibration_batches(count=2):
    batches = []
    for index in range(count):
        paddle.seed(100 + index)
        batches.append(paddle.randn([4, 3, 32, 32]))
    return batches


def calibrated(algo, batches=None, **settings):
    """A small trained residual net, prepared by ResidualPTQ and run on calibration batches."""
    paddle.seed(0)
    model = train_steps(ResidualNet(channels=8, blocks=1))
    ptq = PTQCalibrator(backend="onednn", algo=algo, **settings)
    model = ptq(model, example_inputs=[example_input()])
    for batch in batches if batches is not None else calibration_batches():
        model(batch)
    return ptq, model


def activation_names(ptq, model):
    return {n for n in all_quantizers(model, ptq.plan) if not n.endswith("/weight")}


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_each_algorithm_writes_finite_positive_scales(algo):
    ptq, model = calibrated(algo)
    thresholds = ptq.finish_calibration(model)
    # stem, conv1, conv2, head inputs + the residual add's two inputs and its output
    assert set(thresholds) == activation_names(ptq, model) and len(thresholds) == 7
    values = np.array(list(thresholds.values()))
    assert np.all(np.isfinite(values)) and np.all(values > 0)
    for name, value in thresholds.items():
        assert ptq.quantizer(name)._scale.numpy().item() == pytest.approx(value, rel=1e-6)
        assert value <= ptq.calibrators[name].abs_max * (1 + 1e-6), name


def test_abs_max_threshold_is_the_true_abs_max_of_the_samples():
    paddle.seed(0)
    model = train_steps(ResidualNet(channels=8, blocks=1))
    ptq = PTQCalibrator(algo="abs_max")
    model = ptq(model, example_inputs=[example_input()])
    seen = {}

    def recorder(name):
        def hook(_layer, inputs):
            seen[name] = max(seen.get(name, 0.0), float(np.abs(inputs[0].numpy()).max()))
        return hook

    for name, layer in all_quantizers(model, ptq.plan).items():
        if not name.endswith("/weight"):
            layer.register_forward_pre_hook(recorder(name))
    for batch in calibration_batches(3):
        model(batch)
    thresholds = ptq.finish_calibration(model)
    assert seen.keys() == thresholds.keys()
    for name, value in thresholds.items():
        assert value == pytest.approx(seen[name], rel=1e-6), name


def test_calibration_samples_the_float_model():
    paddle.seed(0)
    float_model = train_steps(ResidualNet(channels=8, blocks=1))
    reference = float_model(example_input()).numpy()
    ptq = PTQCalibrator(algo="abs_max")
    model = ptq(float_model, example_inputs=[example_input()])
    # While calibrating every quantizer is bypassed: outputs are the float model's.
    assert np.allclose(model(example_input()).numpy(), reference, atol=1e-6)
    ptq.finish_calibration(model)
    assert not np.allclose(model(example_input()).numpy(), reference, atol=1e-6)


def test_only_the_first_max_batches_are_sampled():
    batches = calibration_batches(1) + [calibration_batches(1)[0] * 100.0]
    limited, _ = calibrated("abs_max", batches=batches, max_batches=1)
    every, _ = calibrated("abs_max", batches=batches)
    assert limited.used_batches() == 1
    assert limited.calibrators["stem/input"].abs_max == pytest.approx(
        float(np.abs(batches[0].numpy()).max()))
    assert every.calibrators["stem/input"].abs_max == pytest.approx(
        float(np.abs(batches[1].numpy()).max()))


def heavy_tailed(seed=0, shape=(4, 16, 64, 64)):
    """Laplace(0, 1) samples: the long tail of typical activations, with rare large values."""
    return paddle.to_tensor(np.random.RandomState(seed).laplace(size=shape).astype("float32"))


@pytest.mark.parametrize("algo", ["mse", "KL", "hist"])
def test_clipping_algorithms_stay_below_abs_max_on_heavy_tails(algo):
    data = heavy_tailed()
    calibrator = make_calibrator(algo, bits=8)
    calibrator.observe(data)
    assert calibrator.threshold() < calibrator.abs_max == pytest.approx(
        float(np.abs(data.numpy()).max()))


@pytest.mark.parametrize("bits, optimum", [(8, 9.89), (4, 5.03)])
def test_mse_threshold_is_near_the_known_laplace_optimum(bits, optimum):
    # Least-MSE clipping of Laplace(b=1) lies near 9.89 b at 8 bits and 5.03 b at 4 bits.
    calibrator = make_calibrator("mse", bits=bits)
    calibrator.observe(heavy_tailed())
    assert calibrator.threshold() == pytest.approx(optimum, rel=0.1)


def test_unknown_algorithm_names_the_choices():
    with pytest.raises(CalibrationError, match="unknown calibration algorithm 'entropy'.*"
                                               "abs_max, avg, hist, KL, mse"):
        PTQCalibrator(algo="entropy")
    assert PTQCalibrator(algo="kl").algo == "KL"


@pytest.mark.parametrize("settings, message", [
    ({"algo": "KL", "algo_config": {"hist_percent": 0.99}}, "do not apply to KL"),
    ({"algo": "hist", "algo_config": {"hist_percent": 1.5}}, "hist_percent must be in"),
    ({"quant_config": {"activation_preprocess_type": "PACT"}}, "activation_preprocess_type"),
    ({"quant_config": {"activation_quantize_type": "abs_max"}}, "moving_average_abs_max"),
])
def test_settings_ptq_cannot_use_are_refused(settings, message):
    with pytest.raises(CalibrationError, match=message):
        PTQCalibrator(**settings)


def test_finishing_without_calibration_data_says_what_to_do():
    ptq, model = calibrated("abs_max", batches=[])
    with pytest.raises(CalibrationError, match="no calibration batch ran"):
        ptq.finish_calibration(model)


def test_calibration_in_training_mode_is_refused():
    ptq, model = calibrated("abs_max", batches=[])
    model.train()
    with pytest.raises(CalibrationError, match="training mode"):
        model(calibration_batches(1)[0])


@pytest.fixture(scope="module")
def ptq_export(tmp_path_factory):
    ptq, model = calibrated("KL", batches=calibration_batches(3))
    prefix = str(tmp_path_factory.mktemp("ptq") / "model")
    report = ptq.save_quantized_model(model, prefix, input_spec=INPUT_SPEC)
    return ptq, model, prefix, report


def test_export_passes_the_validator_with_the_calibrated_scales(ptq_export):
    ptq, _, prefix, report = ptq_export
    assert validate_saved_model(prefix)["qdq_pairs"] == report["qdq_pairs"]
    assert report["join_quantizers"] == len(ptq.plan.quantizers) == 3
    with open(os.path.join(os.path.dirname(prefix), "quant_plan.json")) as f:
        scale_vars = json.load(f)["scale_vars"]
    with export_tracing():  # exports are old-IR programs
        paddle.enable_static()
        try:
            exe = paddle.static.Executor(paddle.CPUPlace())
            paddle.static.load_inference_model(prefix, exe)
            scope = paddle.static.global_scope()
            exported = {name: np.array(scope.find_var(var).get_tensor()).item()
                        for name, var in scale_vars.items()}
        finally:
            paddle.disable_static()
    for name, value in exported.items():
        assert value == pytest.approx(ptq.thresholds[name], rel=1e-6), name


def test_export_runs_onednn_int8_close_to_the_fake_quant_model(ptq_export, tmp_path):
    _, model, prefix, _ = ptq_export
    reference = model(example_input()).numpy()
    output, _ = run_int8(prefix, tmp_path)
    assert output.shape == reference.shape
    # measured: under 1% of the output range for abs_max, KL and mse
    assert np.abs(output - reference).max() < 0.05 * np.abs(reference).max()


@pytest.fixture(scope="module")
def demo_ptq_run(tmp_path_factory, trained_weights, dataset_overrides):
    out = str(tmp_path_factory.mktemp("post_quant"))
    result = run_tool(["tools/post_quant.py", "-c", DEMO_CONFIG, "--slim_config", PTQ_SLIM,
                       "--output_dir", out, "--eval",
                       "-o", "weights=" + trained_weights, "quant_batch_num=1",
                       "ResidualPTQ.algo=abs_max"] + dataset_overrides)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result


def test_cli_calibrates_evaluates_and_exports_the_demo_picodet(demo_ptq_run):
    out, result = demo_ptq_run
    target = os.path.join(out, "picodet_demo_residual_ptq")
    assert "post-quantized model written to {}".format(target) in result.stdout
    assert sorted(os.listdir(out)) == ["picodet_demo_residual_ptq"]  # no staging left
    assert "abs_max, 1 calibration batch(es)" in result.stdout + result.stderr
    metric = [line for line in result.stdout.splitlines() if line.startswith("fake-quant bbox")]
    assert len(metric) == 1 and "mAP@[.5:.95]" in metric[0]
    assert validate_saved_model(os.path.join(target, "model"))["join_quantizers"] > 0


def test_cli_export_runs_in_paddle_inference_int8(demo_ptq_run, tiny_dataset):
    from slimext.deploy.predictor import DetectorPredictor
    from slimext.deploy.preprocess import load_image

    out, _ = demo_ptq_run
    predictor = DetectorPredictor(os.path.join(out, "picodet_demo_residual_ptq"), "int8")
    detections = predictor.predict(load_image(os.path.join(tiny_dataset, "val",
                                                           "val_00000.png")))
    assert detections.boxes.ndim == 2 and detections.boxes.shape[1] == 6
    assert np.all(np.isfinite(detections.boxes))


def test_ppdet_post_quant_flow_loads_float_weights_and_calibrates_quant_batch_num(
        ppdet_workspace, trained_weights, tiny_dataset, tmp_path):
    """ppdet's own tools/post_quant.py steps: build_slim_model in mode 'test', Trainer in
    mode 'eval', load_weights, Trainer.post_quant."""
    from ppdet.engine import Trainer
    from ppdet.slim import build_slim_model

    slim_config = tmp_path / "ptq_abs_max.yml"
    slim_config.write_text("slim: ResidualPTQ\nResidualPTQ: {algo: abs_max, print_plan: false}\n"
                           "quant_batch_num: 1\n")
    cfg = ppdet_workspace.load_config(DEMO_CONFIG)
    # 8 validation images in batches of 4: the 2 batches ppdet's loop runs.
    ppdet_workspace.merge_config({"weights": trained_weights, "worker_num": 0,
                                  "EvalReader": {"batch_size": 4}, **{
        section: {"dataset_dir": tiny_dataset}
        for section in ("TrainDataset", "EvalDataset", "TestDataset")}})
    cfg = build_slim_model(cfg, str(slim_config), mode="test")
    trainer = Trainer(cfg, mode="eval")
    trainer.load_weights(cfg.weights)
    trainer.post_quant(str(tmp_path / "out"))

    checkpoint = paddle.load(trained_weights + ".pdparams")
    weights = dict(trainer.model.named_parameters())
    key = next(k for k in checkpoint if k.endswith("conv.weight"))
    assert np.array_equal(weights[key].numpy(), checkpoint[key].numpy())
    # ppdet's loop runs quant_batch_num + 1 batches; only quant_batch_num are sampled.
    assert cfg.slim.core.batches == 2 and cfg.slim.core.used_batches() == 1
    export = tmp_path / "out" / "ptq_abs_max"
    assert sorted(os.listdir(str(export))) == ["infer_cfg.yml", "model.pdiparams",
                                               "model.pdmodel", "quant_plan.json"]
    assert validate_saved_model(str(export / "model"))["join_quantizers"] > 0


def test_cli_refuses_a_slim_config_that_is_not_residual_ptq(dataset_overrides, tmp_path):
    result = run_tool(["tools/post_quant.py", "-c", DEMO_CONFIG, "--slim_config",
                       "configs/slim/residual_qat/picodet_demo_residual_qat.yml",
                       "--output_dir", str(tmp_path)] + ["-o"] + dataset_overrides)
    assert_one_error_line(result, "slim: ResidualQAT", "ResidualPTQ")
    assert os.listdir(str(tmp_path)) == []


def test_cli_refuses_an_unknown_algorithm(dataset_overrides, tmp_path):
    result = run_tool(["tools/post_quant.py", "-c", DEMO_CONFIG, "--slim_config", PTQ_SLIM,
                       "--output_dir", str(tmp_path), "-o", "ResidualPTQ.algo=entropy"]
                      + dataset_overrides)
    assert_one_error_line(result, "entropy", "abs_max, avg, hist, KL, mse")


def test_cli_refuses_missing_weights(dataset_overrides, tmp_path):
    result = run_tool(["tools/post_quant.py", "-c", DEMO_CONFIG, "--slim_config", PTQ_SLIM,
                       "--output_dir", str(tmp_path), "-o", "weights=" + str(tmp_path / "none")]
                      + dataset_overrides)
    assert_one_error_line(result, "none.pdparams", "not found")


@pytest.mark.parametrize("tool", ["tools/train.py", "tools/eval.py", "tools/export_model.py"])
def test_other_tools_point_a_ptq_config_to_post_quant(tool, dataset_overrides, tmp_path):
    # They would skip calibration and quietly give the float model.
    result = run_tool([tool, "-c", DEMO_CONFIG, "--slim_config", PTQ_SLIM,
                       "-o", "weights=" + str(tmp_path / "float")] + dataset_overrides)
    assert_one_error_line(result, "post-training quantization", "tools/post_quant.py")


def test_post_quant_of_a_detector_whose_forward_reads_an_input_its_outputs_do_not_use(
        ppdet_workspace, tiny_dataset, tmp_path):
    """GFL's forward reads inputs['im_shape'] that its program never uses: ppdet's
    Trainer.post_quant passes the full spec, the export saves the pruned one, and it must
    trace with every input (it failed with KeyError: 'im_shape')."""
    from ppdet.engine import Trainer
    from ppdet.slim import build_slim_model

    config = os.path.join(REPO_ROOT, "configs", "gfl", "gfl_r18vd_192_demo.yml")
    slim_config = os.path.join(REPO_ROOT, "configs", "slim", "residual_ptq",
                               "gfl_r18vd_demo_residual_ptq.yml")
    cfg = ppdet_workspace.load_config(config)
    paddle.seed(0)
    weights = str(tmp_path / "gfl_random")
    paddle.save(ppdet_workspace.create(cfg.architecture).state_dict(), weights + ".pdparams")
    ppdet_workspace.merge_config({"weights": weights, "worker_num": 0,
                                  "EvalReader": {"batch_size": 4}, **{
        section: {"dataset_dir": tiny_dataset}
        for section in ("TrainDataset", "EvalDataset", "TestDataset")}})
    cfg = build_slim_model(cfg, slim_config, mode="test")
    cfg["quant_batch_num"] = 1
    trainer = Trainer(cfg, mode="eval")
    trainer.load_weights(cfg.weights)
    trainer.post_quant(str(tmp_path / "out"))

    export = tmp_path / "out" / "gfl_r18vd_demo_residual_ptq"
    assert validate_saved_model(str(export / "model"))["join_quantizers"] > 0
