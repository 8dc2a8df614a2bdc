"""Rank which layers and joins lose most when quantized, and suggest rules that keep them.

    tools/quant_sensitivity.py -c configs/picodet/picodet_xs_192_demo_lcnet.yml \
        --slim_config configs/slim/residual_qat/picodet_demo_residual_qat.yml \
        -o weights=output/picodet_xs_192_demo_lcnet/model_final [--metric sqnr|map] \
        [--mode alone|float_alone] [--num_batches 4] [--top_k 5] [--keep 16|float]

Writes sensitivity.txt, sensitivity.json, sensitivity.png and suggested_slim.yml to
--output_dir (default output/quant_sensitivity/<config name>).
"""
import os

from slimext.commands.common import (UserError, load_detection_config, make_parser,
                                     parse_flags, run_command, weights_path)
from slimext.commands.slim_config import read_slim_config

DEFAULT_OUTPUT_ROOT = os.path.join("output", "quant_sensitivity")


def build_parser():
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--slim_config", default=None,
                        help="slim YAML with slim: ResidualQAT (the quantizers to measure)")
    parser.add_argument("--metric", default="sqnr",
                        help="sqnr: SQNR (dB) of the raw head outputs vs float on the "
                             "calibration batches (default); map: mAP on the EvalDataset")
    parser.add_argument("--mode", default="alone",
                        help="alone: quantize one unit, rest float (default); float_alone: "
                             "keep one unit float, rest quantized")
    parser.add_argument("--num_batches", default="4",
                        help="EvalReader batches used to calibrate and to measure SQNR")
    parser.add_argument("--candidates", default=None,
                        help="with --metric map: rank all units by SQNR, then measure mAP for "
                             "the top CANDIDATES only (default: every unit)")
    parser.add_argument("--top_k", default="5",
                        help="how many of the most sensitive units the suggested YAML keeps")
    parser.add_argument("--keep", default="16",
                        help="16: keep them at 16 bits (float on oneDNN); float: skip them")
    parser.add_argument("--plot_top", default="20", help="units shown in the bar chart")
    parser.add_argument("--output_dir", default=None,
                        help="default output/quant_sensitivity/<config name>")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress lines on the terminal (logs are unchanged)")
    return parser


def _count(flag, value, optional=False):
    if value is None and optional:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or str(number) != str(value).strip():
        raise UserError("--{} must be a whole number of at least 1, got {!r}".format(flag, value))
    return number


def _choice(flag, value, choices):
    if value not in choices:
        raise UserError("--{} must be one of {}, got {!r}".format(flag, " | ".join(choices),
                                                                  value))
    return value


def check_flags(flags):
    """Every flag value checked before anything is built; returns the parsed numbers."""
    from slimext.analysis.detection_sensitivity import METRICS
    from slimext.analysis.sensitivity import MODES
    from slimext.analysis.sensitivity_rules import KEEP_CHOICES

    if not flags.slim_config:
        raise UserError("no slim config given: pass --slim_config with slim: ResidualQAT "
                        "(e.g. configs/slim/residual_qat/picodet_demo_residual_qat.yml)")
    _choice("metric", flags.metric, METRICS)
    _choice("mode", flags.mode, MODES)
    _choice("keep", flags.keep, KEEP_CHOICES)
    counts = {name: _count(name, getattr(flags, name))
              for name in ("num_batches", "top_k", "plot_top")}
    counts["candidates"] = _count("candidates", flags.candidates, optional=True)
    if counts["candidates"] is not None and flags.metric != "map":
        raise UserError("--candidates limits the mAP evaluations; it needs --metric map")
    return counts


def prepare(flags):
    """Load and check config, weights and slim config; build nothing expensive."""
    from ppdet.core.workspace import load_config, merge_config

    from slimext.analysis.detection_sensitivity import SLIM_METHOD
    from slimext.analysis.sensitivity_rules import SlimConfigCopyError, read_slim_yaml
    from slimext.matcher import WeightCheckConfigError, WeightCheckPolicy
    from slimext.slim.build import slim_object

    counts = check_flags(flags)
    cfg = load_detection_config(flags, mode="eval")
    weights = weights_path(cfg.get("weights"))
    slim_yaml = read_slim_config(flags.slim_config)
    if slim_yaml.method != SLIM_METHOD:
        raise UserError("slim config {!r} uses slim: {}; the sensitivity analysis measures the "
                        "quantizers of slim: {} (e.g. configs/slim/residual_qat/picodet_demo_"
                        "residual_qat.yml)".format(flags.slim_config, slim_yaml.method,
                                                   SLIM_METHOD))
    # An analysis is not a training run: no plan table, no join error report.
    settings = slim_yaml.settings(flags.opt).replace(print_plan=False, monitor=None)
    load_config(flags.slim_config)
    merge_config(flags.opt)   # -o wins over the slim config, as in training
    try:
        read_slim_yaml(flags.slim_config)
        policy = WeightCheckPolicy.from_config(cfg)
    except (SlimConfigCopyError, WeightCheckConfigError) as error:
        raise UserError(str(error))
    return cfg, slim_object(settings), weights, policy, counts


def _header(flags, weights, result, counts, rules):
    """Comment lines on top of the suggested YAML: where it came from, what it keeps."""
    from slimext.analysis.sensitivity_report import format_value

    keep = "at 16 bits" if flags.keep == "16" else "in float (skip)"
    lines = ["Suggested by tools/quant_sensitivity.py from {}".format(flags.slim_config),
             "metric {}, mode {}, {} calibration batch(es); the last {} rule(s) keep the {} "
             "most sensitive unit(s) {}:".format(result.ranking.metric, flags.mode,
                                                 result.num_batches, len(rules),
                                                 counts["top_k"], keep)]
    for rank, score in enumerate(result.ranking.scores[:counts["top_k"]], 1):
        lines.append("  {}. {} ({}) {} {}".format(rank, score.unit.name, score.unit.kind,
                                                  result.ranking.label,
                                                  format_value(score.value,
                                                               result.ranking.metric)))
    lines += ["", "Train with: tools/train.py -c {} --slim_config <this file> "
                  "-o pretrain_weights={}".format(flags.config, weights), ""]
    return lines


def progress_logger(quiet):
    """The analysis' `[i/n] elapsed, eta` logger, echoed on a terminal that logs do not reach."""
    from ppdet.utils.logger import setup_logger

    from slimext.progress import EchoLogger, open_console

    return EchoLogger(setup_logger("slimext.sensitivity"), open_console(quiet))


def run(argv):
    """The command without its error handling; returns (DetectionSensitivity, report paths)."""
    from slimext.analysis.detection_sensitivity import (SLIM_METHOD, SensitivitySetupError,
                                                        analyze_detector)
    from slimext.analysis.sensitivity_report import write_report
    from slimext.analysis.sensitivity_rules import (slim_yaml_text, suggest_rules,
                                                    suggested_slim_config)
    from slimext.matcher import CheckpointError, WeightCheckFailed
    from slimext.quant.rules import RuleError

    flags = parse_flags(build_parser(), argv)
    cfg, slim, weights, policy, counts = prepare(flags)
    output_dir = flags.output_dir or os.path.join(
        DEFAULT_OUTPUT_ROOT, os.path.splitext(os.path.basename(flags.config))[0])
    try:
        result = analyze_detector(cfg, slim, weights, flags.metric, flags.mode,
                                  counts["num_batches"], counts["candidates"], policy,
                                  logger=progress_logger(flags.quiet))
    except (WeightCheckFailed, RuleError, SensitivitySetupError) as error:
        raise UserError(str(error))
    except CheckpointError as error:
        raise UserError("weights: {}".format(error))
    rules = suggest_rules(result.ranking.top(counts["top_k"]), result.plan, flags.keep)
    config = suggested_slim_config(flags.slim_config, SLIM_METHOD, slim.rules, rules)
    settings = {"config": flags.config, "slim_config": flags.slim_config, "weights": weights,
                "metric": flags.metric, "mode": flags.mode,
                "num_batches": result.num_batches, "candidates": counts["candidates"],
                "top_k": counts["top_k"], "keep": flags.keep, "backend": result.plan.backend,
                "map_images_per_evaluation": result.map_images,
                "units": len(result.screening.scores if result.screening
                             else result.ranking.scores)}
    paths = write_report(output_dir, result.ranking, settings,
                         slim_yaml_text(config, _header(flags, weights, result, counts, rules)),
                         rules, result.screening, counts["plot_top"])
    return result, paths


@run_command
def main(argv=None):
    result, paths = run(argv)
    with open(paths["table"]) as f:
        print(f.read(), end="")
    print("")
    for key in ("table", "json", "chart", "slim_config"):
        print("{:<12} {}".format(key + ":", paths[key]))


if __name__ == "__main__":
    main()
