"""Export a trained detector for Paddle Inference (model.pdmodel/.pdiparams + infer_cfg.yml)."""
import os

from slimext.commands.common import (load_detection_config, make_parser, parse_flags, run_command,
                                     weights_path)
from slimext.commands.slim_config import read_slim_config
from slimext.deploy.conv_bias import rewrite_export_dir
from slimext.fileio import replace_dir, staging_dir


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--output_dir", default="output_inference",
                        help="the export goes to OUTPUT_DIR/<config name>/")
    parser.add_argument("--slim_config", default=None,
                        help="slim config the weights were trained with (QAT exports QDQ)")
    return parser


def export_detector(cfg, output_dir, slim_config=None, fold_conv_biases=True):
    """Export cfg.weights to output_dir/<config name>; return that folder.

    The export is written beside the target first and swapped in only when complete, so a
    failed export never destroys an existing one. fold_conv_biases=False keeps a float
    program as ppdet traces it (to measure what the rewrite buys).
    """
    from ppdet.engine import Trainer
    from ppdet.slim import build_slim_model

    cfg.weights = weights_path(cfg.get("weights"))
    if slim_config:
        from slimext.slim.residual_qat import SKIP_BUILD_COVERAGE

        cfg[SKIP_BUILD_COVERAGE] = True  # the export validator checks the traced program
        cfg = build_slim_model(cfg, slim_config, mode="test")
    trainer = Trainer(cfg, mode="test")
    trainer.load_weights(cfg.weights)

    model_name = os.path.splitext(os.path.basename(cfg.filename))[0]
    target = os.path.join(output_dir, model_name)
    with staging_dir(output_dir, prefix=".export-") as staging:
        trainer.export(staging)  # writes staging/<model_name>/
        if fold_conv_biases:   # a no-op on slimext QDQ exports, folded when written
            rewrite_export_dir(os.path.join(staging, model_name))
        replace_dir(os.path.join(staging, model_name), target)
    return target


def run(argv):
    """The command without its error handling; returns the export folder."""
    flags = parse_flags(build_parser(), argv)
    cfg = load_detection_config(flags, mode="test")
    if flags.slim_config:
        read_slim_config(flags.slim_config).refuse_uncalibrated_use("tools/export_model.py")
    return export_detector(cfg, flags.output_dir, flags.slim_config)


@run_command
def main(argv=None):
    print("exported to {}".format(run(argv)))


if __name__ == "__main__":
    main()
