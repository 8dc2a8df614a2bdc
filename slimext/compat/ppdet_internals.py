"""The private parts of ppdet (paddledet 2.6.0) that slimext uses, each in one function that
fails naming the version when ppdet moves it."""
from slimext.compat.versions import version_text


class PpdetInternalsChanged(RuntimeError):
    """A private ppdet name slimext relies on is gone: the installed paddledet moved it."""


def _missing(what, name):
    return PpdetInternalsChanged(
        "ppdet has no {} ({}), which slimext uses for {}; paddledet {} is not a supported "
        "version (see stacks/) or slimext.compat.ppdet_internals needs updating".format(
            name, what, what, version_text("ppdet")))


def read_yaml_with_base(path):
    """A YAML file merged with its `_BASE_` files, without touching ppdet's global config
    (ppdet's `load_config` would merge it into the workspace)."""
    from ppdet.core import workspace

    reader = getattr(workspace, "_load_config_with_base", None)
    if reader is None:
        raise _missing("reading slim configs with _BASE_", "workspace._load_config_with_base")
    return reader(path)


def trainer_metrics(trainer):
    """The metric objects of a ppdet Trainer (COCO, VOC, ...) its evaluation fills."""
    metrics = getattr(trainer, "_metrics", None)
    if metrics is None:
        raise _missing("reading evaluation results", "Trainer._metrics")
    return metrics


def prune_input_spec(input_spec, program, outputs):
    """ppdet's `_prune_input_spec`: the inputs a traced program reads (its export uses it)."""
    from ppdet.engine import export_utils

    prune = getattr(export_utils, "_prune_input_spec", None)
    if prune is None:
        raise _missing("dropping the inputs a program does not read",
                       "engine.export_utils._prune_input_spec")
    return prune(input_spec, program, outputs)


def rewind_loader(trainer):
    """Start the Trainer's loader from its first batch again (ppdet's loader wraps a
    one-pass iterator over its DataLoader)."""
    loader = getattr(trainer, "loader", None)
    if loader is None or not hasattr(loader, "dataloader"):
        raise _missing("rewinding the evaluation loader", "Trainer.loader.dataloader")
    loader.loader = iter(loader.dataloader)


def local_rank(trainer):
    """The Trainer's rank in this node (0 without distributed training)."""
    return getattr(trainer, "_local_rank", 0)


def tool_overrides(argv):
    """The `-o key=value ...` of a PaddleDetection tool's argv as the tool parses them
    (ppdet's ArgsParser: dotted keys nested, values read as YAML); {} without -o."""
    from ppdet.utils.cli import ArgsParser

    argv = list(argv)
    if "-h" in argv or "--help" in argv:
        return {}  # the tool prints its help; nothing is built
    parser = ArgsParser()
    try:
        known, _ = parser.parse_known_args(argv)
    except SystemExit:  # flags ppdet's parser cannot read: the tool reports them itself
        return {}
    parse = getattr(parser, "_parse_opt", None)
    if parse is None:
        raise _missing("reading a tool's -o options", "ArgsParser._parse_opt")
    return parse(known.opt) or {}
