"""Installed versions, read from package metadata so nothing has to be imported first.

The Paddle environment must be chosen before `import paddle` (some flags are read only at
import), so version gates cannot ask `paddle.__version__`.
"""
import re
from importlib import metadata

_DISTRIBUTIONS = {"paddle": ("paddlepaddle", "paddlepaddle-gpu"),
                  "paddleslim": ("paddleslim",), "ppdet": ("paddledet",)}


def installed_version(package):
    """(major, minor, patch) of an installed package ('paddle', 'paddleslim', 'ppdet'), or None."""
    for distribution in _DISTRIBUTIONS[package]:
        try:
            text = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
        numbers = re.findall(r"\d+", text)[:3]
        return tuple(int(n) for n in numbers + ["0"] * (3 - len(numbers)))
    return None


def paddle_at_least(*version):
    installed = installed_version("paddle")
    return installed is not None and installed >= tuple(version)


def version_text(package):
    version = installed_version(package)
    return ".".join(map(str, version)) if version else "not installed"
