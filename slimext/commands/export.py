"""Export a trained detector for Paddle Inference (model.pdmodel/.pdiparams + infer_cfg.yml)."""
import os
import shutil
import tempfile

from slimext.commands.common import (UserError, load_detection_config, make_parser, parse_flags,
                                     run_command, weights_path)


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--output_dir", default="output_inference",
                        help="the export goes to OUTPUT_DIR/<config name>/")
    parser.add_argument("--slim_config", default=None,
                        help="slim config the weights were trained with (QAT exports QDQ)")
    return parser


def export_detector(cfg, output_dir, slim_config=None):
    """Export cfg.weights to output_dir/<config name>; return that folder.

    The export is written beside the target first and swapped in only when complete, so a
    failed export never destroys an existing one.
    """
    from ppdet.engine import Trainer
    from ppdet.slim import build_slim_model

    from slimext.compat.environment import export_ir_problem

    if export_ir_problem():
        raise UserError(export_ir_problem())
    cfg.weights = weights_path(cfg.get("weights"))
    if slim_config:
        cfg = build_slim_model(cfg, slim_config, mode="test")
    trainer = Trainer(cfg, mode="test")
    trainer.load_weights(cfg.weights)

    model_name = os.path.splitext(os.path.basename(cfg.filename))[0]
    target = os.path.join(output_dir, model_name)
    os.makedirs(output_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=output_dir)
    try:
        trainer.export(staging)  # writes staging/<model_name>/
        _replace_dir(os.path.join(staging, model_name), target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _replace_dir(new, target):
    """Put folder `new` at `target`; the old target is removed only after the move."""
    old = None
    if os.path.exists(target):
        old = tempfile.mkdtemp(prefix=".old-", dir=os.path.dirname(target))
        os.rmdir(old)
        os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        if old:
            os.replace(old, target)
        raise
    if old:
        shutil.rmtree(old, ignore_errors=True)


def run(argv):
    """The command without its error handling; returns the export folder."""
    from slimext.commands.post_quant import refuse_uncalibrated_use

    flags = parse_flags(build_parser(), argv)
    cfg = load_detection_config(flags, mode="test")
    refuse_uncalibrated_use(flags.slim_config, "tools/export_model.py")
    return export_detector(cfg, flags.output_dir, flags.slim_config)


@run_command
def main(argv=None):
    print("exported to {}".format(run(argv)))


if __name__ == "__main__":
    main()
