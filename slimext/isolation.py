"""Run one function in a fresh Python process and get its (JSON) return value back.

ppdet keeps its workspace config in a process global that each load_config merges into,
so train, eval and export of different configs in one process can leak settings into each
other. A fresh interpreter per step avoids that and frees the model's memory afterwards.
It is a plain `python -m slimext.isolation` child, not a multiprocessing one: Paddle's
data-loader workers misbehave under a multiprocessing parent (their exit handlers clash).
"""
import importlib
import json
import os
import subprocess
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class StepFailed(RuntimeError):
    """The function raised or exited non-zero in its process; the message says where."""


def _function_name(func):
    module = func.__module__
    if module == "__main__":  # defined in a module run with -m: use its real name
        module = sys.modules["__main__"].__spec__.name
    return "{}:{}".format(module, func.__qualname__)


def run_in_fresh_process(func, *args, log_path=None, **kwargs):
    """func(*args, **kwargs) in a new interpreter; arguments and result must be JSON values."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory() as folder:
        result_path = os.path.join(folder, "result.json")
        command = [sys.executable, "-m", "slimext.isolation", _function_name(func), result_path]
        log = open(log_path, "w") if log_path else None
        try:
            process = subprocess.run(command, input=json.dumps([args, kwargs]), text=True, env=env,
                                     stdout=log, stderr=subprocess.STDOUT if log else None)
        finally:
            if log:
                log.close()
        where = " (log: {})".format(log_path) if log_path else ""
        if process.returncode != 0 or not os.path.isfile(result_path):
            raise StepFailed("{} failed with exit status {}{}".format(
                func.__qualname__, process.returncode, where))
        with open(result_path) as f:
            return json.load(f)


def _child_main(name, result_path):
    module_name, qualname = name.split(":")
    func = importlib.import_module(module_name)
    for part in qualname.split("."):
        func = getattr(func, part)
    from slimext.fileio import atomic_write_json

    args, kwargs = json.loads(sys.stdin.read())
    result = func(*args, **kwargs)
    atomic_write_json(result_path, result, indent=None)


if __name__ == "__main__":
    _child_main(*sys.argv[1:3])
