"""The one reader of slim YAML for every command: read once, checked before any model work.

    slim = read_slim_config(path)          # cached: later calls in the run reuse it
    slim.method                            # 'ResidualQAT', 'QAT', 'ResidualPTQ', ...
    slim.settings(flags.opt)               # slimext methods: the checked SlimSettings
    slim.refuse_uncalibrated_use("tools/train.py")

ppdet itself still loads the file into its global config when it builds the slim model
(`build_slim_model`); this reader is what slimext's own checks use.
"""
import os

from slimext.commands.config_values import yaml_error_message
from slimext.commands.errors import UserError
from slimext.compat.ppdet_internals import read_yaml_with_base

from slimext.slim import PTQ_METHOD

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

    def settings(self, overrides=None):
        """The method's checked SlimSettings (-o overrides of its section on top); a bad
        setting ends the command with one line naming the file. None for ppdet's own
        methods (QAT, PTQ, ...), which ppdet checks."""
        from slimext.slim.settings import SECTION_KEYS, parse_slim_settings

        if self.method not in SECTION_KEYS:
            return None
        try:
            return parse_slim_settings(self.method, self.section(overrides))
        except ValueError as error:  # every settings error of slimext is a ValueError
            raise UserError("{} (in {} of {})".format(error, self.method, self.path))

    def check_settings(self, overrides=None):
        """Every setting of a slimext method, checked before any model work."""
        self.settings(overrides)


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
