"""Train a detector with ppdet's Trainer, optionally wrapped by a slim method (QAT, ...)."""
from slimext.commands.common import make_parser, parse_flags, run_command


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--eval", action="store_true", help="evaluate after each snapshot")
    parser.add_argument("-r", "--resume", default=None, help="checkpoint to resume from")
    parser.add_argument("--slim_config", default=None, help="slim method config (QAT, PTQ, ...)")
    parser.add_argument("--output_dir", default=None, help="where checkpoints go (save_dir)")
    parser.add_argument("--use_vdl", action="store_true", help="log scalars to VisualDL")
    parser.add_argument("--vdl_log_dir", default="vdl_log_dir/scalar")
    parser.add_argument("--save_prediction_only", action="store_true")
    parser.add_argument("--seed", type=int, default=None, help="fix random seeds")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar/lines on the terminal (logs are unchanged)")
    return parser


def run(argv):
    """The command without its error handling; returns the final checkpoint's path."""
    from slimext import pipeline

    flags = parse_flags(build_parser(), argv)
    return pipeline.train(flags.config, output_dir=flags.output_dir,
                          slim_config=flags.slim_config, overrides=flags.opt,
                          resume=flags.resume, seed=flags.seed, evaluate=flags.eval,
                          quiet=flags.quiet, use_vdl=flags.use_vdl,
                          vdl_log_dir=flags.vdl_log_dir,
                          save_prediction_only=flags.save_prediction_only)


@run_command
def main(argv=None):
    run(argv)


if __name__ == "__main__":
    main()
