"""What every command shares: flag parsing, config loading with early checks, device choice.

Bad input raises `UserError` with the fix in its message; `run_command` turns it into one
`Error: ...` line and exit status 2 instead of a traceback.
"""
import difflib
import os
import sys

from slimext.commands.config_values import check_override_values, yaml_error_message
from slimext.commands.errors import UserError, run_command  # noqa: F401 (used by every command)
from slimext.commands.slim_config import read_slim_config


def make_parser(description):
    """ppdet's parser (`-c`, `-o key=value`) so flags read as in PaddleDetection."""
    from ppdet.utils.cli import ArgsParser

    parser = ArgsParser()
    parser.description = description
    return parser


def parse_flags(parser, argv):
    if argv is None:
        argv = sys.argv[1:]
    if not any(a in ("-c", "--config") or a.startswith("--config=") for a in argv) \
            and not any(a in ("-h", "--help") for a in argv):
        raise UserError("no config given: pass -c/--config path/to/config.yml "
                        "(e.g. configs/picodet/picodet_xs_192_demo_lcnet.yml)")
    bad = [o for o in _raw_opts(argv) if "=" not in o]
    if bad:
        raise UserError("-o expects key=value pairs, got {!r} (e.g. -o weights=output/model_final)"
                        .format(bad[0]))
    return parser.parse_args(argv)


def _raw_opts(argv):
    opts, collecting = [], False
    for arg in argv:
        if arg in ("-o", "--opt"):
            collecting = True
        elif arg.startswith("-") and not arg.startswith("-o="):
            collecting = False
        elif collecting:
            opts.append(arg)
    return opts


def _check_file(path, what):
    if not path or not os.path.isfile(path):
        raise UserError("{} {!r} does not exist (check the path; configs live under configs/)"
                        .format(what, path))
    if os.path.splitext(path)[1] not in (".yml", ".yaml"):
        raise UserError("{} {!r} is not a .yml/.yaml file".format(what, path))


def _merged(base, extra):
    """base with extra's keys laid over it, section by section: a slim YAML setting one key
    of a section (PicoHeadV2.static_assigner_epoch) keeps the config's other keys known."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def check_override_keys(cfg, overrides, prefix=""):
    """Refuse `-o` keys the config does not know: ppdet would silently ignore a typo."""
    for key, value in overrides.items():
        if key not in cfg:
            close = difflib.get_close_matches(key, [str(k) for k in cfg.keys()], n=1)
            hint = " (did you mean {}{}?)".format(prefix, close[0]) if close else ""
            raise UserError("unknown -o key {}{}{}: it is not in the config or any of its "
                            "_BASE_ files".format(prefix, key, hint))
        if isinstance(value, dict) and isinstance(cfg[key], list):
            raise UserError("-o {}{}.<index>=... cannot set one element of a list; copy the "
                            "config and edit the list there".format(prefix, key))
        if isinstance(value, dict) and isinstance(cfg[key], dict) and not _is_schema(cfg[key]):
            check_override_keys(cfg[key], value, prefix="{}{}.".format(prefix, key))


def _is_schema(value):
    from ppdet.core.config.schema import SchemaDict

    return isinstance(value, SchemaDict)


# Keys the tools themselves accept through -o although no config file sets them.
TOOL_KEYS = ("weights", "pretrain_weights", "use_gpu", "save_dir", "WeightCheck", "ScaleSync")


def load_detection_config(flags, mode):
    """Load -c with its _BASE_ files, apply -o, pick the device; raise UserError early."""
    import slimext

    slimext.register_with_ppdet()  # the config may name slimext's slim classes
    from ppdet.core.workspace import load_config, merge_config

    _check_file(flags.config, "config")
    slim_config = getattr(flags, "slim_config", None)
    if slim_config:
        _check_file(slim_config, "slim config")
    try:
        cfg = load_config(flags.config)
    except Exception as error:  # ppdet raises whatever its YAML reading raises
        message = yaml_error_message(error, "config {!r}".format(flags.config))
        if message is None and not isinstance(error, (OSError, KeyError)):
            raise
        raise UserError(message or "could not read config {!r} or one of its _BASE_ files: {}"
                        .format(flags.config, error))
    unknown = {k: v for k, v in flags.opt.items() if k not in TOOL_KEYS}
    if slim_config:
        slim = read_slim_config(slim_config)
        known = _merged(cfg, slim.data)
        check_override_keys(known, unknown)
        check_override_values(known, flags.opt)
        slim.check_settings(flags.opt)
    else:
        check_override_keys(cfg, unknown)
        check_override_values(cfg, flags.opt)
    merge_config(flags.opt)
    cfg.use_gpu = bool(cfg.get("use_gpu", False)) and _cuda_available()
    for flag in ("use_npu", "use_xpu", "use_mlu"):
        cfg[flag] = False
    select_device(cfg)
    check_dataset(cfg, mode)
    return cfg


def _cuda_available():
    import paddle

    return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


def select_device(cfg):
    import paddle

    paddle.set_device("gpu" if cfg.use_gpu else "cpu")


def check_dataset(cfg, mode):
    """The dataset the mode reads must exist before any model is built."""
    section = {"train": "TrainDataset", "eval": "EvalDataset"}.get(mode)
    if section is None or section not in cfg:
        return
    dataset = cfg[section]
    root = getattr(dataset, "dataset_dir", None) or dataset.get("dataset_dir", "")
    if not os.path.isdir(root):
        hint = ""
        if "demo" in root:
            hint = "; make it with: python -m slimext.data.demo --out {}".format(root)
        raise UserError("dataset directory {!r} ({}.dataset_dir) does not exist{}".format(
            root, section, hint))
    anno = getattr(dataset, "anno_path", None) or dataset.get("anno_path")
    if anno and not os.path.isfile(os.path.join(root, anno)):
        raise UserError("annotation file {!r} not found under {!r} ({}.anno_path)".format(
            anno, root, section))


def metric_capture():
    """A ppdet callback class that keeps the metric results: evaluate() resets them right
    after computing them."""
    from ppdet.engine.callbacks import Callback

    from slimext.compat.ppdet_internals import trainer_metrics

    class MetricCapture(Callback):
        def __init__(self, trainer):
            super().__init__(trainer)
            self.results = {}

        def on_epoch_end(self, status):
            if status.get("mode") == "eval":
                for metric in trainer_metrics(self.model):
                    for key, stats in (metric.get_results() or {}).items():
                        self.results[key] = [float(x) for x in stats]  # numpy -> plain

    return MetricCapture


def weights_path(weights, what="weights"):
    """Local .pdparams path for a weights setting; URLs must already be in ppdet's cache."""
    from ppdet.utils.checkpoint import is_url
    from ppdet.utils.download import WEIGHTS_HOME, map_path

    if not weights:
        raise UserError("no {0} given: pass -o {0}=path/to/model (.pdparams)".format(what))
    if is_url(weights):
        local = map_path(weights, WEIGHTS_HOME)
        if not os.path.isfile(local):
            raise UserError("{} {} is a download URL and this machine is offline: put the file at "
                            "{} or pass -o {}=local/path".format(what, weights, local, what))
        return local
    path = weights if weights.endswith(".pdparams") else weights + ".pdparams"
    if not os.path.isfile(path):
        raise UserError("{} file {!r} not found (give the path with or without .pdparams)"
                        .format(what, path))
    return path
