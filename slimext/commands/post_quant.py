"""Post-training quantization: calibrate a float detector and export it for INT8 inference.

    tools/post_quant.py -c CFG --slim_config configs/slim/residual_ptq/<...>.yml \
        -o weights=FLOAT [--output_dir DIR] [--eval]

Calibration runs `quant_batch_num` EvalReader batches through the float model, as ppdet's
tools/post_quant.py does; the export (model.pdmodel/.pdiparams, infer_cfg.yml,
quant_plan.json) goes to DIR/<slim config name>/ (ppdet names slim outputs after the slim
config). --eval also scores the calibrated fake-quant
model on the EvalDataset (the PTQ accuracy, without Paddle Inference).
"""
import os

from slimext.commands.common import (UserError, load_detection_config, make_parser,
                                     metric_capture, parse_flags, run_command, weights_path)
from slimext.commands.slim_config import PTQ_METHOD, read_slim_config
from slimext.compat.ppdet_internals import rewind_loader
from slimext.fileio import replace_dir, staging_dir

SLIM_NAME = PTQ_METHOD


def build_parser():
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--slim_config", default=None,
                        help="slim YAML with slim: ResidualPTQ (configs/slim/residual_ptq/)")
    parser.add_argument("--output_dir", default="output_inference",
                        help="the export goes to OUTPUT_DIR/<slim config name>/")
    parser.add_argument("--eval", action="store_true",
                        help="after calibration, report the fake-quant model's EvalDataset metric")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars/lines on the terminal")
    return parser


def check_slim_config(slim_config, overrides):
    """The slim YAML asks for ResidualPTQ with settings it accepts; return the YAML dict."""
    if not slim_config:
        raise UserError("no slim config given: pass --slim_config "
                        "configs/slim/residual_ptq/picodet_demo_residual_ptq.yml")
    slim = read_slim_config(slim_config)
    if slim.method != SLIM_NAME:
        raise UserError("{} says slim: {}; tools/post_quant.py calibrates slim: {} "
                        "(see configs/slim/residual_ptq/)".format(
                            slim_config, slim.method, SLIM_NAME))
    slim.check_settings(overrides)
    check_batch_num(overrides.get("quant_batch_num", slim.data.get("quant_batch_num", 10)))
    return slim.data


def check_batch_num(value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError("quant_batch_num must be a positive integer (calibration batches of "
                        "EvalReader), got {!r}".format(value))


def build_ptq_trainer(cfg, slim_config, opt):
    """ppdet's slim build for mode 'test' (build_slim_model's generic branch), except that
    -o is applied before the slim object is created: ppdet's tools re-apply -o only
    afterwards, so `-o ResidualPTQ.algo=mse` would be lost. The slim object loads the
    float weights itself, before quantizing."""
    from ppdet.core.workspace import create, load_config, merge_config
    from ppdet.engine import Trainer

    from slimext.quant.calibration import CalibrationError
    from slimext.quant.rules import RuleError
    from slimext.quant.settings import QuantConfigError

    load_config(slim_config)
    merge_config(opt)
    try:
        slim = create(cfg.slim)
        cfg["slim_type"] = cfg.slim
        cfg["model"] = slim(create(cfg.architecture))
    except (CalibrationError, RuleError, QuantConfigError) as error:
        raise UserError("{} (in {} of {})".format(error, SLIM_NAME, slim_config))
    cfg["slim"] = slim
    return Trainer(cfg, mode="eval")


def evaluate_calibrated(trainer):
    """The EvalDataset metric of the calibrated fake-quant model (e.g. {'bbox': [...]})."""
    # ppdet's eval loader is its own iterator and post_quant's loop left it mid-way:
    # without a rewind the evaluation would skip the calibration images.
    rewind_loader(trainer)
    capture = metric_capture()(trainer)
    trainer.register_callbacks([capture])
    trainer.evaluate()
    return capture.results


def post_quantize(cfg, slim_config, opt, output_dir, evaluate=False, quiet=False):
    """Calibrate, export to output_dir/<slim config name>; return (folder, metrics or None).

    The export is written beside the target and swapped in only when complete.
    """
    from slimext.commands.engine_progress import (CalibrationProgress, install_trainer_progress,
                                                  loader_length)

    slim_yaml = check_slim_config(slim_config, opt)
    # -o weights, else a slim config's own weights (ppdet's PTQ configs set them), else -c's.
    cfg.weights = weights_path(opt.get("weights") or slim_yaml.get("weights")
                               or cfg.get("weights"))
    trainer = build_ptq_trainer(cfg, slim_config, dict(opt, weights=cfg.weights))
    console = install_trainer_progress(trainer, quiet)
    # ppdet's post_quant runs quant_batch_num + 1 batches (it stops after index N).
    batches = min(int(cfg.get("quant_batch_num", 10)) + 1,
                  loader_length(trainer, "loader") or float("inf"))

    model_name = os.path.splitext(os.path.basename(cfg.filename))[0]
    target = os.path.join(output_dir, model_name)
    with staging_dir(output_dir, prefix=".post_quant-") as staging:
        try:
            with CalibrationProgress(trainer.model, console, batches):
                trainer.post_quant(staging)  # calibrates, then writes staging/<model_name>/
        except BaseException:
            cfg["slim"].abort_calibration()  # no quantizer stays bypassed
            raise
        metrics = evaluate_calibrated(trainer) if evaluate else None
        replace_dir(os.path.join(staging, model_name), target)
    return target, metrics


def run(argv):
    """The command without its error handling; returns (export folder, metrics or None)."""
    flags = parse_flags(build_parser(), argv)
    if not flags.slim_config:
        check_slim_config(None, flags.opt)
    cfg = load_detection_config(flags, mode="eval")
    return post_quantize(cfg, flags.slim_config, flags.opt, flags.output_dir, flags.eval,
                         flags.quiet)


def format_metrics(metrics):
    lines = []
    for key, stats in (metrics or {}).items():
        if len(stats) >= 2:
            lines.append("fake-quant {}: mAP@[.5:.95] {:.4f}  mAP@.5 {:.4f}".format(
                key, stats[0], stats[1]))
    return "\n".join(lines)


@run_command
def main(argv=None):
    target, metrics = run(argv)
    if metrics is not None:
        print(format_metrics(metrics))
    print("post-quantized model written to {}".format(target))


if __name__ == "__main__":
    main()
