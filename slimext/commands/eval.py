"""Evaluate a trained detector on its EvalDataset with ppdet's Trainer (COCO/VOC metric)."""
from slimext.commands.common import make_parser, parse_flags, run_command


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


def run(argv):
    """The command without its error handling; returns the metric results (or None)."""
    from slimext import pipeline

    flags = parse_flags(build_parser(), argv)
    if flags.json_eval:
        pipeline.score_saved_predictions(flags.config, flags.output_eval, flags.opt)
        return None
    overrides = dict(flags.opt)
    weights = overrides.pop("weights", None)
    return pipeline.evaluate(flags.config, weights, slim_config=flags.slim_config,
                             overrides=overrides, output_eval=flags.output_eval,
                             classwise=flags.classwise,
                             save_prediction_only=flags.save_prediction_only)


@run_command
def main(argv=None):
    run(argv)


if __name__ == "__main__":
    main()
