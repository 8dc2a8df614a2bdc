"""Print the quantization plan a slim config gives a model, without training anything.

    tools/quant_plan.py -c configs/picodet/picodet_s_320_coco_lcnet.yml \
        --slim_config configs/slim/residual_qat/picodet_s_320_residual_qat.yml [--json plan.json]
"""
from slimext.commands.common import (UserError, load_detection_config, make_parser,
                                     parse_flags, run_command)
from slimext.commands.slim_config import read_slim_config
from slimext.fileio import atomic_write_json


def build_parser():
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--slim_config", required=True,
                        help="a slim YAML with slim: ResidualQAT (or another plan-based method)")
    parser.add_argument("--json", default=None, help="also write the plan as JSON here")
    return parser


def plan_for(cfg, slim_config, overrides=None):
    """Build the config's model (random weights), apply the slim method, return its plan."""
    from ppdet.core.workspace import create, load_config, merge_config

    from slimext.quant.rules import RuleError
    from slimext.slim.build import slim_object

    slim_yaml = read_slim_config(slim_config)
    settings = slim_yaml.settings(overrides)
    if settings is None:
        raise UserError("slim config {!r} uses {}, which has no quantization plan; use "
                        "slim: ResidualQAT".format(slim_config, slim_yaml.method))
    load_config(slim_config)
    if overrides:
        merge_config(overrides)
    slim = slim_object(settings)
    try:
        slim(create(cfg.architecture), check_coverage=True, print_plan=False)
    except RuleError as error:
        raise UserError(str(error))
    return slim.plan


def run(argv):
    flags = parse_flags(build_parser(), argv)
    cfg = load_detection_config(flags, mode="test")
    plan = plan_for(cfg, flags.slim_config, flags.opt)
    if flags.json:
        atomic_write_json(flags.json, plan.to_dict())
    return plan


@run_command
def main(argv=None):
    print(run(argv).table())


if __name__ == "__main__":
    main()
