"""Values a user gives in YAML files and `-o key=value`, checked before any work starts.

ppdet reads `-o epoch=abc` as the string 'abc' and fails deep in its training loop; a YAML
syntax error surfaces as a long traceback. Here each becomes one `UserError` naming the
file and line, or the key, the value and what it has to be.
"""
import numbers

from slimext.commands.errors import UserError

# Settings whose value ppdet uses as a count or a size: they must be positive (or >= 0).
POSITIVE_INTEGERS = ("epoch", "batch_size", "snapshot_epoch", "log_iter", "num_classes")
NON_NEGATIVE_INTEGERS = ("worker_num",)
POSITIVE_NUMBERS = ("base_lr",)


def yaml_error_message(error, what):
    """'<file>:<line>:<column>: <problem>' for a YAML syntax error (None if not one)."""
    import yaml

    if not isinstance(error, yaml.YAMLError):
        return None
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if mark is None:
        return "{} is not valid YAML: {}".format(what, problem)
    return "{}:{}:{}: YAML syntax error: {} (fix the file; {} is read with its _BASE_ files)" \
        .format(mark.name, mark.line + 1, mark.column + 1, problem, what)


def _kind(value):
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, numbers.Integral):
        return "int"
    if isinstance(value, numbers.Real):
        return "number"
    return None


def _expected(config_value):
    return "true or false" if _kind(config_value) == "bool" else "a number"


def _fits(value, config_value):
    """Whether `value` can stand where the config has `config_value`: a number for a
    number (counts are checked by _check_range), true/false for a bool."""
    need, have = _kind(config_value), _kind(value)
    if need is None or value is None:
        return True
    if need == "bool":
        return have == "bool"
    return have in ("int", "number")


def _check_range(key, value, path):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return
    if key in POSITIVE_INTEGERS and (value <= 0 or value != int(value)):
        raise UserError("-o {}={}: must be a positive integer".format(path, value))
    if key in NON_NEGATIVE_INTEGERS and (value < 0 or value != int(value)):
        raise UserError("-o {}={}: must be an integer >= 0".format(path, value))
    if key in POSITIVE_NUMBERS and value <= 0:
        raise UserError("-o {}={}: must be a number > 0".format(path, value))


def _config_value(cfg, key):
    try:
        return cfg[key]
    except (KeyError, TypeError):
        return None


def check_override_values(cfg, overrides, prefix=""):
    """Refuse an `-o` value whose type differs from the config's own value for that key
    (a number where the config has a number, true/false where it has a bool), and counts,
    sizes and learning rates out of range."""
    for key, value in overrides.items():
        path = prefix + str(key)
        current = _config_value(cfg, key)
        if isinstance(value, dict):
            if hasattr(current, "keys"):
                check_override_values(current, value, path + ".")
            continue
        if not _fits(value, current):
            raise UserError("-o {}={!r}: expected {} (the config has {}: {!r})".format(
                path, value, _expected(current), path, current))
        _check_range(str(key), value, path)
