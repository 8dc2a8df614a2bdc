"""Post-training quantization: calibrate a float detector and export it for INT8 inference.

    tools/post_quant.py -c CFG --slim_config configs/slim/residual_ptq/<...>.yml \
        -o weights=FLOAT [--output_dir DIR] [--eval]

Calibration runs `quant_batch_num` EvalReader batches through the float model, as ppdet's
tools/post_quant.py does; the export (model.pdmodel/.pdiparams, infer_cfg.yml,
quant_plan.json) goes to DIR/<slim config name>/ (ppdet names slim outputs after the slim
config). --eval also scores the calibrated fake-quant
model on the EvalDataset (the PTQ accuracy, without Paddle Inference).
"""
from slimext.commands.common import make_parser, parse_flags, run_command


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


def run(argv):
    """The command without its error handling; returns (export folder, metrics or None)."""
    from slimext import pipeline

    flags = parse_flags(build_parser(), argv)
    overrides = dict(flags.opt)
    weights = overrides.pop("weights", None)
    if not flags.slim_config:
        pipeline.check_ptq_slim_config(None, flags.opt)
    return pipeline.post_quantize(flags.config, weights, flags.slim_config, flags.output_dir,
                                  overrides=overrides, evaluate=flags.eval, quiet=flags.quiet)


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
