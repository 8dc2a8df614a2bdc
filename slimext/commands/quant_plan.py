"""Print the quantization plan a slim config gives a model, without training anything.

    tools/quant_plan.py -c configs/picodet/picodet_s_320_coco_lcnet.yml \
        --slim_config configs/slim/residual_qat/picodet_s_320_residual_qat.yml [--json plan.json]
"""
from slimext.commands.common import (UserError, load_detection_config, make_parser,
                                     parse_flags, run_command)
from slimext.fileio import atomic_write_json


def build_parser():
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--slim_config", required=True,
                        help="a slim YAML with slim: ResidualQAT (or another plan-based method)")
    parser.add_argument("--json", default=None, help="also write the plan as JSON here")
    return parser


def plan_for(cfg, slim_config):
    """Build the config's model (random weights), apply the slim method, return its plan."""
    from ppdet.core.workspace import create, load_config

    from slimext.quant.rules import RuleError

    load_config(slim_config)
    slim = create(cfg.slim)
    if not hasattr(slim, "plan"):
        raise UserError("slim config {!r} uses {}, which has no quantization plan; use "
                        "slim: ResidualQAT".format(slim_config, type(slim).__name__))
    slim.print_plan = False
    try:
        slim(create(cfg.architecture))
    except RuleError as error:
        raise UserError(str(error))
    return slim.plan


def run(argv):
    flags = parse_flags(build_parser(), argv)
    cfg = load_detection_config(flags, mode="test")
    plan = plan_for(cfg, flags.slim_config)
    if flags.json:
        atomic_write_json(flags.json, plan.to_dict())
    return plan


@run_command
def main(argv=None):
    print(run(argv).table())


if __name__ == "__main__":
    main()
