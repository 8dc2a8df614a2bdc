"""slimext from Python: train, quantize (QAT, PTQ), evaluate, export, benchmark.

    from slimext import pipeline

    float_weights = pipeline.train(CONFIG, output_dir="output", overrides={"epoch": 12})
    qat_weights = pipeline.train(CONFIG, slim_config=QAT_YAML, output_dir="output",
                                 pretrain_weights=float_weights, overrides={"epoch": 3})
    metrics = pipeline.evaluate(CONFIG, qat_weights, slim_config=QAT_YAML)
    int8_dir = pipeline.export(CONFIG, qat_weights, "output_inference", slim_config=QAT_YAML)
    ptq_dir, ptq_metrics = pipeline.post_quantize(CONFIG, float_weights, PTQ_YAML,
                                                  "output_inference", evaluate=True)
    result = pipeline.benchmark([float_dir, int8_dir])   # paddle, openvino, onnxruntime
    summary = pipeline.export_onnx(int8_dir, "picodet_int8.onnx")

These are what the tools run (tools/train.py, eval.py, export_model.py, post_quant.py,
deploy_bench.py, export_onnx.py parse their flags and call them), so a call checks its
input as a tool does: a bad config, override, slim setting or path raises
`slimext.commands.errors.UserError` with the fix in its message, before any work starts.
`overrides` are the `-o` settings as a mapping; dotted keys are nested as on the command
line ({"TrainReader.batch_size": 8} is {"TrainReader": {"batch_size": 8}}). Functions
that write (checkpoints, exports) write beside the target and rename into place.

ppdet keeps its configuration in one process-wide workspace, which each config loaded
merges into: run different configs in different processes (slimext.isolation does).
"""
import os
from types import SimpleNamespace

from slimext.commands.common import (UserError, check_dataset, load_detection_config,
                                     metric_capture, weights_path)
from slimext.commands.slim_config import PTQ_METHOD, read_slim_config
from slimext.fileio import atomic_write_json, replace_dir, staging_dir


def nested_overrides(overrides):
    """{"a.b": 1} -> {"a": {"b": 1}}, merged with nested mappings (ppdet's -o form)."""
    nested = {}
    for key, value in (overrides or {}).items():
        if not isinstance(key, str) or not key:
            raise UserError("override keys are config keys such as 'epoch' or "
                            "'TrainReader.batch_size', got {!r}".format(key))
        parts = key.split(".")
        place = nested
        for part in parts[:-1]:
            place = place.setdefault(part, {})
            if not isinstance(place, dict):
                raise UserError("override {!r} sets a key inside {!r}, which is also set to "
                                "a value".format(key, part))
        if isinstance(value, dict) and isinstance(place.get(parts[-1]), dict):
            place[parts[-1]].update(value)
        else:
            place[parts[-1]] = value
    return nested


def _load(config, overrides, slim_config, mode):
    """The detection config with overrides applied and every value checked."""
    flags = SimpleNamespace(config=config, opt=nested_overrides(overrides),
                            slim_config=slim_config)
    return load_detection_config(flags, mode=mode), flags.opt


def _with_weights(overrides, weights):
    """The overrides with `weights` (None: the config's own weights setting)."""
    overrides = dict(overrides or {})
    if weights is not None:
        overrides["weights"] = weights
    return overrides


def _slim_settings(slim_config, overrides, tool):
    if not slim_config:
        return None
    slim = read_slim_config(slim_config)
    slim.refuse_uncalibrated_use(tool)
    return slim.settings(overrides)


# --- training -----------------------------------------------------------------------------

def train(config, output_dir=None, slim_config=None, overrides=None, pretrain_weights=None,
          resume=None, seed=None, evaluate=False, quiet=False, use_vdl=False,
          vdl_log_dir="vdl_log_dir/scalar", save_prediction_only=False):
    """Train `config` (QAT when slim_config is a ResidualQAT/QAT YAML); return the path of
    the final checkpoint (without .pdparams). pretrain_weights go through the weight check.

    In a `python -m paddle.distributed.launch` run every rank calls it; scales and reports
    stay consistent across ranks.
    """
    from slimext.commands.engine_progress import install_trainer_progress
    from slimext.distributed import start_data_parallel

    overrides = dict(overrides or {})
    if pretrain_weights is not None:
        overrides["pretrain_weights"] = pretrain_weights
    start_data_parallel()  # the launcher's process group; a no-op in one process
    cfg, opt = _load(config, overrides, slim_config, mode="train")  # slim settings too
    settings = _slim_settings(slim_config, opt, "tools/train.py")
    cfg.update(eval=evaluate, resume=resume, use_vdl=use_vdl, vdl_log_dir=vdl_log_dir,
               save_prediction_only=save_prediction_only)
    if output_dir:
        cfg.save_dir = output_dir
    if evaluate:
        check_dataset(cfg, "eval")
    run = SimpleNamespace(config=config, slim_config=slim_config, opt=opt, resume=resume,
                          seed=seed, settings=settings)
    trainer = prepare_on_all_ranks(run, cfg)
    install_trainer_progress(trainer, quiet)
    trainer.train(evaluate)
    # Slim methods with an end-of-training step (ResidualQAT's error report) run it here.
    finalize = getattr(cfg.get("slim"), "finalize", None)
    if callable(finalize):
        finalize()
    return os.path.join(cfg.get("save_dir") or "output", _run_name(cfg.filename),
                        "model_final")


def _run_name(config_path):
    """ppdet names a run's folders after the config it loaded last (the slim config)."""
    return os.path.splitext(os.path.basename(config_path))[0]


def prepare_trainer(run, cfg):
    """Build the model (and slim wrapper), load weights: everything before the first step.

    run: config, slim_config, opt (nested overrides), resume, seed and, optionally, the
    parsed slim settings (read from the slim config when absent).
    """
    from ppdet.engine import Trainer, set_random_seed

    from slimext.checkpoints import install_atomic_checkpoints
    from slimext.commands.pretrain_check import checked_pretrain_loading
    from slimext.slim.build import build_slim_model

    install_atomic_checkpoints()
    if run.seed is not None:
        set_random_seed(run.seed)
    if run.resume:
        weights_path(run.resume, "resume checkpoint")
    if cfg.get("pretrain_weights") and not run.resume:
        cfg.pretrain_weights = weights_path(cfg.pretrain_weights, "pretrain_weights")
    # Pretrained weights load through the weight check (before the slim wrapping, before
    # any step): a mismatch stops here with one report instead of per-key log lines.
    with checked_pretrain_loading(cfg, run.config):
        if run.slim_config:
            # -o wins over the slim config, before any weights are read.
            cfg = build_slim_model(cfg, run.slim_config, mode="train", overrides=run.opt,
                                   settings=getattr(run, "settings", None))
        trainer = Trainer(cfg, mode="train")
        if run.resume:
            trainer.resume_weights(run.resume)
        elif cfg.get("pretrain_weights") and not run.slim_config:
            trainer.load_weights(cfg.pretrain_weights)
    return trainer


def prepare_on_all_ranks(run, cfg):
    """prepare_trainer on every rank, or a clean stop on every rank (data parallel)."""
    from slimext.distributed import PeerRankFailed, all_ranks_or_none
    from slimext.slim.data_parallel import (RanksDisagree, ScaleSyncConfigError,
                                            install_scale_sync)

    try:
        with all_ranks_or_none("preparing the model"):
            trainer = prepare_trainer(run, cfg)
        # After the vote: its own collective must not meet a failed rank's vote.
        install_scale_sync(trainer, cfg)
    except (PeerRankFailed, RanksDisagree, ScaleSyncConfigError) as error:
        raise UserError(str(error))
    return trainer


# --- evaluation ---------------------------------------------------------------------------

def evaluate(config, weights, slim_config=None, overrides=None, output_eval=None,
             classwise=False, save_prediction_only=False):
    """The EvalDataset metric of `weights` (fake-quant with a slim config), e.g.
    {"bbox": [mAP@[.5:.95], mAP@.5, ...]} for COCO."""
    overrides = _with_weights(overrides, weights)
    cfg, opt = _load(config, overrides, slim_config, mode="eval")
    settings = _slim_settings(slim_config, opt, "tools/eval.py")
    cfg.update(output_eval=output_eval, classwise=classwise,
               save_prediction_only=save_prediction_only)
    return evaluate_detector(cfg, slim_config, opt, settings)


def evaluate_detector(cfg, slim_config=None, overrides=None, settings=None):
    """Run cfg.weights over the EvalDataset of a loaded config; return the metric results."""
    from ppdet.engine import Trainer

    from slimext.slim.build import build_slim_model

    cfg.weights = weights_path(cfg.get("weights"))
    if slim_config:
        # The slim model is built (and its weights loaded) here, as in ppdet's own eval;
        # evaluation needs no join coverage report.
        cfg = build_slim_model(cfg, slim_config, mode="eval", overrides=overrides,
                               settings=settings, check_coverage=False)
    trainer = Trainer(cfg, mode="eval")
    capture = metric_capture()(trainer)
    trainer.register_callbacks([capture])
    trainer.load_weights(cfg.weights)
    trainer.evaluate()
    return capture.results


def score_saved_predictions(config, output_eval, overrides=None):
    """Score the bbox.json an earlier evaluation wrote to output_eval (ppdet's --json_eval)."""
    from ppdet.core.workspace import create
    from ppdet.metrics.coco_utils import json_eval_results

    cfg, _ = _load(config, overrides, None, mode="eval")
    folder = output_eval or "."
    if not os.path.isfile(os.path.join(folder, "bbox.json")):
        raise UserError("--json_eval needs {} (run eval with --output_eval {} first)".format(
            os.path.join(folder, "bbox.json"), folder))
    json_eval_results(cfg.metric, json_directory=folder, dataset=create("EvalDataset")())


# --- export -------------------------------------------------------------------------------

def export(config, weights, output_dir="output_inference", slim_config=None, overrides=None,
           fold_conv_biases=True):
    """Export `weights` for Paddle Inference to output_dir/<config name>/ (an INT8 QDQ
    program, validated, with a QAT slim config); return that folder.

    fold_conv_biases=False keeps a float program as ppdet traces it (to measure what the
    bias rewrite buys).
    """
    overrides = _with_weights(overrides, weights)
    cfg, opt = _load(config, overrides, slim_config, mode="test")
    settings = _slim_settings(slim_config, opt, "tools/export_model.py")
    return export_detector(cfg, output_dir, slim_config, opt, settings, fold_conv_biases)


def export_detector(cfg, output_dir, slim_config=None, overrides=None, settings=None,
                    fold_conv_biases=True):
    """Export cfg.weights of a loaded config; the folder is swapped in only when complete,
    so a failed export never destroys an existing one."""
    from ppdet.engine import Trainer

    from slimext.deploy.conv_bias import rewrite_export_dir
    from slimext.slim.build import build_slim_model

    cfg.weights = weights_path(cfg.get("weights"))
    if slim_config:
        # No coverage trace: the export validator checks the traced program itself.
        cfg = build_slim_model(cfg, slim_config, mode="test", overrides=overrides,
                               settings=settings, check_coverage=False)
    trainer = Trainer(cfg, mode="test")
    trainer.load_weights(cfg.weights)

    model_name = _run_name(cfg.filename)
    target = os.path.join(output_dir, model_name)
    with staging_dir(output_dir, prefix=".export-") as staging:
        trainer.export(staging)  # writes staging/<model_name>/
        if fold_conv_biases:   # a no-op on slimext QDQ exports, folded when written
            rewrite_export_dir(os.path.join(staging, model_name))
        replace_dir(os.path.join(staging, model_name), target)
    return target


# --- post-training quantization -----------------------------------------------------------

def post_quantize(config, weights, slim_config, output_dir="output_inference", overrides=None,
                  evaluate=False, quiet=False):
    """Calibrate the float `weights` with a ResidualPTQ slim config and export the INT8
    model to output_dir/<slim config name>/; return (that folder, the calibrated fake-quant
    model's EvalDataset metric with evaluate=True, else None)."""
    overrides = _with_weights(overrides, weights)
    check_ptq_slim_config(slim_config, nested_overrides(overrides))
    cfg, opt = _load(config, overrides, slim_config, mode="eval")
    return post_quantize_detector(cfg, slim_config, opt, output_dir, evaluate, quiet)


def check_ptq_slim_config(slim_config, overrides):
    """The slim YAML asks for ResidualPTQ with settings it accepts; return the YAML dict."""
    if not slim_config:
        raise UserError("no slim config given: pass --slim_config "
                        "configs/slim/residual_ptq/picodet_demo_residual_ptq.yml")
    slim = read_slim_config(slim_config)
    if slim.method != PTQ_METHOD:
        raise UserError("{} says slim: {}; tools/post_quant.py calibrates slim: {} "
                        "(see configs/slim/residual_ptq/)".format(
                            slim_config, slim.method, PTQ_METHOD))
    slim.check_settings(overrides)
    _check_batch_num(overrides.get("quant_batch_num", slim.data.get("quant_batch_num", 10)))
    return slim.data


def _check_batch_num(value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError("quant_batch_num must be a positive integer (calibration batches of "
                        "EvalReader), got {!r}".format(value))


def _ptq_trainer(cfg, slim_config, opt):
    """The slim model for mode 'test' with -o applied over the slim YAML first (ppdet's
    tools re-apply -o only afterwards, so `-o ResidualPTQ.algo=mse` would be lost). The
    slim object loads the float weights itself, before quantizing."""
    from ppdet.engine import Trainer

    from slimext.slim.build import build_slim_model

    settings = read_slim_config(slim_config).settings(opt)
    cfg = build_slim_model(cfg, slim_config, mode="test", overrides=opt, settings=settings,
                           check_coverage=True, print_plan=settings.print_plan)
    return Trainer(cfg, mode="eval")


def _evaluate_calibrated(trainer):
    """The EvalDataset metric of the calibrated fake-quant model (e.g. {'bbox': [...]})."""
    from slimext.compat.ppdet_internals import rewind_loader

    # ppdet's eval loader is its own iterator and post_quant's loop left it mid-way:
    # without a rewind the evaluation would skip the calibration images.
    rewind_loader(trainer)
    capture = metric_capture()(trainer)
    trainer.register_callbacks([capture])
    trainer.evaluate()
    return capture.results


def post_quantize_detector(cfg, slim_config, opt, output_dir, evaluate=False, quiet=False):
    """post_quantize for a loaded config; the export is swapped in only when complete."""
    from slimext.commands.engine_progress import (CalibrationProgress, install_trainer_progress,
                                                  loader_length)

    slim_yaml = check_ptq_slim_config(slim_config, opt)
    # -o weights, else a slim config's own weights (ppdet's PTQ configs set them), else -c's.
    cfg.weights = weights_path(opt.get("weights") or slim_yaml.get("weights")
                               or cfg.get("weights"))
    trainer = _ptq_trainer(cfg, slim_config, dict(opt, weights=cfg.weights))
    console = install_trainer_progress(trainer, quiet)
    # ppdet's post_quant runs quant_batch_num + 1 batches (it stops after index N).
    batches = min(int(cfg.get("quant_batch_num", 10)) + 1,
                  loader_length(trainer, "loader") or float("inf"))

    model_name = _run_name(cfg.filename)
    target = os.path.join(output_dir, model_name)
    with staging_dir(output_dir, prefix=".post_quant-") as staging:
        try:
            with CalibrationProgress(trainer.model, console, batches):
                trainer.post_quant(staging)  # calibrates, then writes staging/<model_name>/
        except BaseException:
            cfg["slim"].abort_calibration()  # no quantizer stays bypassed
            raise
        metrics = _evaluate_calibrated(trainer) if evaluate else None
        replace_dir(os.path.join(staging, model_name), target)
    return target, metrics


# --- deployment ---------------------------------------------------------------------------

def benchmark(model_dirs, runtimes=None, cpu_threads=2, runs=20, warmup=3, max_seconds=8.0,
              image_file=None, json_path=None):
    """Time each export on every runtime and precision that applies (interleaved rounds);
    return the result with its "rows" and "recommendation" (written to json_path too)."""
    from slimext.deploy.predictor import PredictorError
    from slimext.deploy.runtime_choice import run_bench

    if isinstance(model_dirs, str):
        model_dirs = [model_dirs]
    if runs < 1:
        raise UserError("runs must be at least 1, got {}".format(runs))
    try:
        result = run_bench(list(model_dirs), runtimes, cpu_threads, runs, warmup, max_seconds,
                           image_file)
    except (FileNotFoundError, ValueError, ImportError, PredictorError) as error:
        raise UserError(str(error))
    if json_path:
        atomic_write_json(json_path, result)
    failed = [row for row in result["rows"] if "error" in row]
    if failed and len(failed) == len(result["rows"]):
        # A case that cannot run is a row of the result; with none left there is no result.
        raise UserError("no case could run; the first: {} {}: {}".format(
            failed[0]["model_dir"], failed[0]["label"], failed[0]["error"]))
    return result


def export_onnx(model_dir, save_file, opset_version=None, nms=True):
    """Write an export (float or QDQ) as ONNX to save_file (temporary name, then renamed);
    return its summary (opset, node and Q/DQ counts, outputs). nms=False leaves out NMS:
    the raw boxes and scores are the outputs."""
    from slimext.onnx import DEFAULT_OPSET, UnsupportedOpError, export_onnx as write_onnx

    if not os.path.isdir(model_dir):
        raise UserError("export folder {!r} does not exist (write one with "
                        "tools/export_model.py or tools/post_quant.py)".format(model_dir))
    if not str(save_file).endswith(".onnx"):
        raise UserError("--save_file {!r} should end in .onnx".format(save_file))
    try:
        import onnx  # noqa: F401
    except ImportError as error:
        raise UserError("the ONNX export needs the onnx package ({}): pip install -r "
                        "requirements-onnx.txt".format(error))
    try:
        return write_onnx(model_dir, save_file,
                          DEFAULT_OPSET if opset_version is None else opset_version, nms)
    except (FileNotFoundError, UnsupportedOpError, ValueError) as error:
        raise UserError(str(error))
