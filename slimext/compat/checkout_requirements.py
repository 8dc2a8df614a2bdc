"""Install what a PaddleDetection checkout's ppdet needs into this environment, keeping the
stack's pins.

    python -m slimext.compat.checkout_requirements PaddleDetection [--constraints constraints.txt]

(`make checkout-deps PPDET=../PaddleDetection` runs it in slimext's venv.) v2.7+ and develop
import `imgaug` at top level (`ppdet/data/source/culane.py`, `deploy/python/preprocess.py`),
which the installed paddledet 2.6.0 never needed.

How: the checkout's requirements.txt is resolved by pip (`--dry-run --report`) under
constraints that hold every installed distribution at its installed version, on top of
slimext's constraints.txt, so nothing already there (Paddle, paddledet, PaddleSlim, numpy,
opencv, ...) can move. Then, with the reasons printed:
- a requirement pip cannot resolve under those pins is skipped, with pip's own reason;
- a distribution that would put a second copy of a module an installed one provides
  (`lapx` beside `lap`, `opencv-python-headless` beside `opencv-python`: same `lap`, same
  `cv2`) is left out: it would overwrite the pinned files;
and the rest is installed exactly as resolved (`--no-deps`, pinned versions). Last, the
checkout's ppdet is imported from its root to show the result.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from importlib import metadata

# Distributions that install the same top-level module: only one may be there.
SAME_MODULE = (
    ("cv2", ("opencv-python", "opencv-python-headless", "opencv-contrib-python",
             "opencv-contrib-python-headless")),
    ("lap", ("lap", "lapx")),
    ("paddle", ("paddlepaddle", "paddlepaddle-gpu")),
)
# Never pinned from the environment: the installer itself and slimext (editable).
UNPINNED = {"pip", "setuptools", "wheel", "slimext"}


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line):
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    return canonical(match.group(1)) if match else None


def read_requirements(path):
    """The requirement lines of a requirements file (comments, blanks, options dropped)."""
    lines, ignored = [], []
    with open(path) as f:
        for raw in f:
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            (ignored if line.startswith("-") else lines).append(line)
    return lines, ignored


def installed_distributions():
    found = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonical(name), dist.version)
    return found


def module_taken_by(name, installed):
    """(module, installed distribution providing it) when installing `name` would put a second
    copy of a module there, else None."""
    for module, group in SAME_MODULE:
        if name in group:
            for other in group:
                if other != name and other in installed:
                    return module, other
    return None


def constraints_text(installed, stack_constraints):
    """slimext's constraints, then every other installed distribution at its version."""
    lines, named = [], set()
    if stack_constraints:
        with open(stack_constraints) as f:
            for raw in f:
                line = raw.split("#", 1)[0].strip()
                if line:
                    lines.append(line)
                    named.add(requirement_name(line))
    for name, version in sorted(installed.items()):
        if name not in named and name not in UNPINNED:
            lines.append("{}=={}".format(name, version))
    return "\n".join(lines) + "\n"


def pip(*args):
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]


def dry_run(requirements, constraints, report):
    """(returncode, last error line, [(name, version, requested)]) of resolving `requirements`."""
    result = subprocess.run(pip("install", "--dry-run", "-q", "--report", report,
                                "-c", constraints, *requirements),
                            capture_output=True, text=True)
    if result.returncode != 0:
        errors = [l.strip() for l in result.stderr.splitlines()
                  if l.strip() and not l.startswith("WARNING: Location")]
        reason = next((l for l in errors if "conflict" in l.lower() or "no matching" in l.lower()
                       or l.startswith("ERROR")), errors[-1] if errors else "pip failed")
        return result.returncode, reason, []
    with open(report) as f:
        items = json.load(f).get("install", [])
    return 0, "", [(canonical(item["metadata"]["name"]), item["metadata"]["version"],
                    item.get("requested", False)) for item in items]


def plan(requirements, constraints, installed, workdir):
    """(to install [(name, version)], skipped [(what, why)])."""
    skipped, wanted = [], []
    for line in requirements:
        name = requirement_name(line)
        taken = module_taken_by(name, installed)
        if taken:
            skipped.append((line, "the installed {} already provides module '{}'; {} would "
                                  "overwrite its files".format(taken[1], taken[0], name)))
        else:
            wanted.append(line)
    report = os.path.join(workdir, "report.json")
    code, reason, resolved = dry_run(wanted, constraints, report)
    if code != 0:  # find which requirements cannot be resolved under the pins
        kept = []
        for line in wanted:
            code, reason, _ = dry_run([line], constraints, report)
            if code != 0:
                skipped.append((line, "does not resolve with the stack's pins: " + reason))
            else:
                kept.append(line)
        code, reason, resolved = dry_run(kept, constraints, report) if kept else (0, "", [])
        if code != 0:
            raise SystemExit("checkout-deps: the requirements resolve one by one but not "
                             "together: " + reason)
    install = []
    for name, version, _ in resolved:
        taken = module_taken_by(name, installed)
        if taken:
            skipped.append(("{}=={} (needed by another requirement)".format(name, version),
                            "the installed {} already provides module '{}'; {} would overwrite "
                            "its files".format(taken[1], taken[0], name)))
        else:
            install.append((name, version))
    return install, skipped


def import_checkout_ppdet(root):
    code = "import ppdet, os; print(os.path.dirname(ppdet.__file__))"
    return subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", help="the PaddleDetection folder (with requirements.txt)")
    parser.add_argument("--constraints", default=None, help="slimext's constraints.txt")
    parser.add_argument("--dry_run", action="store_true", help="say what would be installed")
    args = parser.parse_args(argv)
    path = os.path.join(args.checkout, "requirements.txt")
    if not os.path.isfile(path):
        print("Error: {} not found: give the root of a PaddleDetection checkout (PPDET=...)"
              .format(path), file=sys.stderr)
        return 2
    requirements, ignored = read_requirements(path)
    for line in ignored:
        print("checkout-deps: ignored option line {!r}".format(line))
    installed = installed_distributions()
    with tempfile.TemporaryDirectory() as workdir:
        constraints = os.path.join(workdir, "constraints.txt")
        with open(constraints, "w") as f:
            f.write(constraints_text(installed, args.constraints))
        install, skipped = plan(requirements, constraints, installed, workdir)
        for what, why in skipped:
            print("checkout-deps: skipped {}: {}".format(what, why))
        if not install:
            print("checkout-deps: nothing to install: {} is satisfied by this environment"
                  .format(path))
        else:
            pins = ["{}=={}".format(name, version) for name, version in install]
            print("checkout-deps: {} {}".format("would install" if args.dry_run else
                                                "installing", " ".join(pins)))
            if not args.dry_run:
                subprocess.run(pip("install", "-q", "--no-deps", "-c", constraints, *pins),
                               check=True)
    if args.dry_run:
        return 0
    result = import_checkout_ppdet(args.checkout)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["?"])[-1]
        print("Error: the checkout's ppdet still does not import from {}: {}"
              .format(args.checkout, last), file=sys.stderr)
        return 1
    print("checkout-deps: ppdet imports from {} ({})".format(
        os.path.abspath(args.checkout), result.stdout.strip().splitlines()[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
