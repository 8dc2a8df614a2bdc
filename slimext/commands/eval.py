"""Evaluate a trained detector on its EvalDataset with ppdet's Trainer (COCO/VOC metric)."""
from slimext.commands.common import (UserError, load_detection_config, make_parser,
                                     metric_capture, parse_flags, run_command, weights_path)
from slimext.commands.slim_config import read_slim_config


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--slim_config", default=None,
                        help="slim config the weights were trained with (QAT, PTQ, ...)")
    parser.add_argument("--output_eval", default=None,
                        help="folder for the prediction json (bbox.json)")
    parser.add_argument("--json_eval", action="store_true",
                        help="score the bbox.json already in --output_eval, no model run")
    parser.add_argument("--classwise", action="store_true", help="print AP per class")
    parser.add_argument("--save_prediction_only", action="store_true",
                        help="write predictions, skip the metric")
    return parser


def evaluate_detector(cfg, slim_config=None):
    """Run cfg.weights over the EvalDataset; return the metric results (e.g. {'bbox': [...]}).

    For COCO, results['bbox'][0] is mAP@[.5:.95] and [1] is mAP@.5.
    """
    from ppdet.engine import Trainer
    from ppdet.slim import build_slim_model

    cfg.weights = weights_path(cfg.get("weights"))
    if slim_config:
        from slimext.slim.residual_qat import SKIP_BUILD_COVERAGE

        cfg[SKIP_BUILD_COVERAGE] = True  # evaluation needs no join coverage report
        # The slim model is built (and its weights loaded) here, as in ppdet's own eval.
        cfg = build_slim_model(cfg, slim_config, mode="eval")
    trainer = Trainer(cfg, mode="eval")
    capture = metric_capture()(trainer)
    trainer.register_callbacks([capture])
    trainer.load_weights(cfg.weights)
    trainer.evaluate()
    return capture.results


def score_saved_predictions(cfg, output_eval):
    """Score prediction json files written by an earlier run (ppdet's --json_eval)."""
    import os

    from ppdet.core.workspace import create
    from ppdet.metrics.coco_utils import json_eval_results

    folder = output_eval or "."
    if not os.path.isfile(os.path.join(folder, "bbox.json")):
        raise UserError("--json_eval needs {} (run eval with --output_eval {} first)".format(
            os.path.join(folder, "bbox.json"), folder))
    json_eval_results(cfg.metric, json_directory=folder, dataset=create("EvalDataset")())


def run(argv):
    """The command without its error handling; returns the metric results (or None)."""
    from ppdet.utils.cli import merge_args

    flags = parse_flags(build_parser(), argv)
    cfg = load_detection_config(flags, mode="eval")
    if flags.slim_config:
        read_slim_config(flags.slim_config).refuse_uncalibrated_use("tools/eval.py")
    merge_args(cfg, flags, exclude_args=["config", "opt", "slim_config", "json_eval"])
    if flags.json_eval:
        score_saved_predictions(cfg, flags.output_eval)
        return None
    return evaluate_detector(cfg, flags.slim_config)


@run_command
def main(argv=None):
    run(argv)


if __name__ == "__main__":
    main()
