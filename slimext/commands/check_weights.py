"""Check pretrained weights against a config's model: one report, a verdict, an exit code.

    tools/check_weights.py -c CFG [--slim_config SLIM] -o pretrain_weights=PATH [--json OUT]

Exit status: 0 ok, 1 warn (expected differences worth knowing, e.g. another class count),
2 error (suspicious differences, too little loaded, or an unusable file or path).
"""
import sys

from slimext.commands.common import (UserError, load_detection_config, make_parser,
                                     parse_flags, run_command)

EXIT_CODES = {"ok": 0, "warn": 1, "error": 2}


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--slim_config", default=None,
                        help="slim config (QAT, ...): check against the wrapped model")
    parser.add_argument("--json", default=None, help="write the full report here as JSON")
    parser.add_argument("--verbose", action="store_true", help="list every key's outcome")
    return parser


def pick_weights(cfg, opts):
    """-o weights wins over -o pretrain_weights; then the config's pretrain_weights."""
    for key in ("weights", "pretrain_weights"):
        if opts.get(key):
            return key, opts[key]
    if cfg.get("pretrain_weights"):
        return "pretrain_weights", cfg.pretrain_weights
    raise UserError("no weights to check: pass -o pretrain_weights=path/to/model.pdparams "
                    "(or -o weights=...)")


def build_checked_model(cfg, slim_config, mode="train"):
    """The config's model as training builds it; QAT-wrapped when a slim config is given."""
    from slimext.matcher import build_model

    model = build_model(cfg)
    if slim_config:
        from ppdet.core.workspace import create, load_config

        load_config(slim_config)
        slim = create(cfg.slim)
        if mode != "train" and "QAT" in type(slim).__name__:
            slim.quant_config["activation_preprocess_type"] = None  # as ppdet's test mode
        model = slim(model)
    return model


@run_command
def main(argv=None):
    from slimext.matcher import (CheckpointError, WeightCheckConfigError, WeightCheckPolicy,
                                 check_weights)

    flags = parse_flags(build_parser(), argv)
    cfg = load_detection_config(flags, mode="check")
    mode = "test" if flags.opt.get("weights") else "train"  # QAT export/eval vs training
    key, weights = "weights", flags.opt.get("weights")
    try:
        policy = WeightCheckPolicy.from_config(cfg)
        model = build_checked_model(cfg, flags.slim_config, mode)
        key, weights = pick_weights(cfg, flags.opt)  # after the slim config may have set one
        report = check_weights(model, weights, policy, target=flags.config)
    except (CheckpointError, WeightCheckConfigError) as error:
        where = " ({}={})".format(key, weights) if weights else ""
        raise UserError("{}{}".format(error, where))
    print(report.format_text(verbose=flags.verbose))
    if flags.json:
        report.write_json(flags.json)
        print("JSON report: {}".format(flags.json))
    if policy.detail_file:
        report.write_details(policy.detail_file)
    sys.exit(EXIT_CODES[report.verdict])


if __name__ == "__main__":
    main()
