"""Which PaddleDetection a tool script belongs to, and which ppdet Python imported.

A PaddleDetection source tree carries its version in `setup.py` (`PPDET_VERSION = "2.6.0"`
on the v2.6.0 tag) and, once built or installed, in the generated `ppdet/version.py`
(`full_version = '...'`). release/2.6.1, v2.7.0, release/2.7.1 and develop all say "0.0.0":
there the number tells only that the tree is newer than v2.6.0, so a git checkout's
`git describe` is added when it is available.
"""
import os
import re
import subprocess
import sys
from dataclasses import dataclass

UNNUMBERED = "0.0.0"
_SETUP_VERSION = re.compile(r"""^PPDET_VERSION\s*=\s*['"]([^'"]+)['"]""", re.M)
_GENERATED_VERSION = re.compile(r"""^full_version\s*=\s*['"]([^'"]+)['"]""", re.M)


@dataclass(frozen=True)
class Checkout:
    root: str
    version: str            # as the tree states it ("2.6.0", "0.0.0"), or "" if it says nothing
    version_source: str     # the file it was read from
    git_describe: str = ""

    @property
    def ppdet_dir(self):
        return os.path.join(self.root, "ppdet")

    def describe(self):
        if not self.version:
            text = "of unknown version (neither setup.py nor ppdet/version.py names one)"
        elif self.version == UNNUMBERED:
            text = ("newer than 2.6.0 ({} says {}, as release/2.6.1, 2.7.x and develop do)"
                    .format(self.version_source, UNNUMBERED))
        else:
            text = "{} ({})".format(self.version, self.version_source)
        if self.git_describe:
            text += ", git {}".format(self.git_describe)
        return text


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _git_describe(root):
    if not os.path.exists(os.path.join(root, ".git")):
        return ""
    try:
        result = subprocess.run(["git", "-C", root, "describe", "--tags", "--always"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def checkout_version(root):
    """(version, file it came from): the generated ppdet/version.py first, then setup.py."""
    for relative, pattern in (("ppdet/version.py", _GENERATED_VERSION),
                              ("setup.py", _SETUP_VERSION)):
        match = pattern.search(_read(os.path.join(root, relative)) or "")
        if match:
            return match.group(1), relative
    return "", ""


def find_checkout(path, levels=4):
    """The PaddleDetection tree holding `path` (a folder with ppdet/__init__.py above it)."""
    folder = os.path.dirname(os.path.abspath(path)) if os.path.isfile(path) else path
    folder = os.path.abspath(folder)
    for _ in range(levels):
        if os.path.isfile(os.path.join(folder, "ppdet", "__init__.py")):
            version, source = checkout_version(folder)
            return Checkout(folder, version, source, _git_describe(folder))
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return None


@dataclass(frozen=True)
class ImportedPpdet:
    version: str    # ppdet.__version__, or what its distribution's metadata says
    location: str   # the ppdet package folder

    def describe(self):
        return "ppdet {} from {}".format(self.version or "of unknown version", self.location)


def imported_ppdet():
    """The ppdet this process imported (None before `import ppdet`)."""
    module = sys.modules.get("ppdet")
    if module is None or not getattr(module, "__file__", None):
        return None
    location = os.path.dirname(os.path.abspath(module.__file__))
    version = getattr(module, "__version__", "")
    if not version:
        version, _ = checkout_version(os.path.dirname(location))
    if not version and "site-packages" in location:
        from slimext.compat.versions import version_text

        version = version_text("ppdet")
    return ImportedPpdet(version, location)


def same_ppdet(checkout, imported):
    return os.path.realpath(checkout.ppdet_dir) == os.path.realpath(imported.location)
