"""Export a trained detector for Paddle Inference (model.pdmodel/.pdiparams + infer_cfg.yml)."""
from slimext.commands.common import make_parser, parse_flags, run_command


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--output_dir", default="output_inference",
                        help="the export goes to OUTPUT_DIR/<config name>/")
    parser.add_argument("--slim_config", default=None,
                        help="slim config the weights were trained with (QAT exports QDQ)")
    return parser


def run(argv):
    """The command without its error handling; returns the export folder."""
    from slimext import pipeline

    flags = parse_flags(build_parser(), argv)
    overrides = dict(flags.opt)
    weights = overrides.pop("weights", None)
    return pipeline.export(flags.config, weights, flags.output_dir,
                           slim_config=flags.slim_config, overrides=overrides)


@run_command
def main(argv=None):
    print("exported to {}".format(run(argv)))


if __name__ == "__main__":
    main()
