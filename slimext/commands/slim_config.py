"""The one reader of slim YAML for every command: read once, checked before any model work.

    slim = read_slim_config(path)          # cached: later calls in the run reuse it
    slim.method                            # 'ResidualQAT', 'QAT', 'ResidualPTQ', ...
    slim.check_settings(flags.opt)         # slimext methods: every setting, one Error line
    slim.refuse_uncalibrated_use("tools/train.py")

ppdet itself still loads the file into its global config when it builds the slim model
(`build_slim_model`); this reader is what slimext's own checks use.
"""
import os

from slimext.commands.config_values import yaml_error_message
from slimext.commands.errors import UserError
from slimext.compat.ppdet_internals import read_yaml_with_base

PTQ_METHOD = "ResidualPTQ"
QAT_METHOD = "ResidualQAT"

_CACHE = {}


class SlimConfig:
    """A slim YAML with its _BASE_ files merged (ppdet's own reading rules)."""

    def __init__(self, path, data):
        self.path = path
        self.data = data

    @property
    def method(self):
        return self.data.get("slim")

    def section(self, overrides=None):
        """The method's settings, with -o overrides of that section on top."""
        section = dict(self.data.get(self.method) or {})
        section.update((overrides or {}).get(self.method) or {})
        return section

    def refuse_uncalibrated_use(self, tool):
        """Training, evaluating or exporting with a ResidualPTQ config would skip calibration
        and quietly give the float model: point to tools/post_quant.py."""
        if self.method == PTQ_METHOD:
            raise UserError("{} is post-training quantization, which {} does not calibrate: "
                            "run tools/post_quant.py -c <config> --slim_config {} -o "
                            "weights=<float weights> (add --eval for its metric)".format(
                                self.path, tool, self.path))

    def check_settings(self, overrides=None):
        """Every setting of a slimext method (quant_config, rules, backend, monitor, PTQ
        algorithm); a bad one ends the command with one line naming the file."""
        checks = {QAT_METHOD: _check_qat_section, PTQ_METHOD: _check_ptq_section}
        check = checks.get(self.method)
        if check is None:
            return
        try:
            check(self.section(overrides))
        except ValueError as error:  # every settings error of slimext is a ValueError
            raise UserError("{} (in {} of {})".format(error, self.method, self.path))


def _check_keys(section, slim_class):
    """ppdet passes only the keys a slim class takes and drops the rest without a word."""
    import difflib
    import inspect

    known = [name for name in inspect.signature(slim_class.__init__).parameters
             if name != "self"]
    unknown = sorted(str(key) for key in section if key not in known)
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = " (did you mean {}?)".format(close[0]) if close else ""
        raise ValueError("unknown key(s) {}{}; {} takes {}".format(
            ", ".join(unknown), hint, slim_class.__name__, ", ".join(known)))


def _check_common(section):
    from slimext.quant.backends import get_backend
    from slimext.quant.rules import parse_rules

    get_backend(section.get("backend", "onednn"))
    parse_rules(section.get("rules"))
    strict = section.get("strict", False)
    if not isinstance(strict, bool):
        raise ValueError("strict must be true or false, got {!r}".format(strict))


def _check_qat_section(section):
    from slimext.analysis.monitor import monitor_from_config
    from slimext.quant.settings import check_quant_config
    from slimext.slim.residual_qat import ResidualQAT

    _check_keys(section, ResidualQAT)
    _check_common(section)
    check_quant_config(section.get("quant_config"))
    monitor_from_config(section.get("monitor"))


def _check_ptq_section(section):
    from slimext.quant.calibration import check_options
    from slimext.quant.ptq import check_ptq_quant_config
    from slimext.slim.residual_ptq import ResidualPTQ

    _check_keys(section, ResidualPTQ)
    _check_common(section)
    check_options(section.get("algo", "KL"), section.get("algo_config"))
    check_ptq_quant_config(section.get("quant_config"))


def read_slim_config(path):
    """The SlimConfig at `path`, read once per process (again only if the file changed)."""
    if not path or not os.path.isfile(path):
        raise UserError("slim config {!r} does not exist (check the path; slim configs live "
                        "under configs/slim/)".format(path))
    key = (os.path.abspath(path), os.path.getmtime(path))
    if key not in _CACHE:
        try:
            data = read_yaml_with_base(path)
        except Exception as error:  # whatever YAML reading raises
            message = yaml_error_message(error, "slim config {!r}".format(path))
            if message is None and not isinstance(error, (OSError, KeyError)):
                raise
            raise UserError(message or "could not read slim config {!r} or one of its "
                            "_BASE_ files: {}".format(path, error))
        if not isinstance(data, dict) or not data.get("slim"):
            raise UserError("slim config {!r} names no slim method (nor do its _BASE_ files): "
                            "add a line such as `slim: ResidualQAT` (or ResidualPTQ, QAT, PTQ)"
                            .format(path))
        _CACHE[key] = SlimConfig(path, dict(data))
    return _CACHE[key]
