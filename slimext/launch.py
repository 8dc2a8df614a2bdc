"""Run a PaddleDetection tool script with slimext's classes, fixes and weight check.

    python -m slimext.launch path/to/PaddleDetection/tools/train.py -c CFG --slim_config S

The script runs as `python script.py args...` would run it (its folder first on sys.path,
sys.argv set, __name__ == "__main__"), after `slimext.register_with_ppdet()` has added
slimext's classes to ppdet's registry (so its YAML can name them) and applied slimext's
compatibility fixes (ppdet's exports then trace into the old IR that INT8 inference needs).
ppdet is already imported by then: the one Python finds first (a checkout's own when run
from its root, else the installed one), even if the script puts its checkout on sys.path.
A script that needs another ppdet than the imported one ends with one `Error:` line naming
both versions and the ways out. The config's `pretrain_weights` load through the weight
check, as in slimext's own tools: a checkpoint that does not fit stops the script before
any step with one report and exit status 2. Under `python -m paddle.distributed.launch`,
quantizer scales are kept equal across ranks as with slimext's own tools/train.py.
"""
import os
import runpy
import sys

from slimext.compat.deploy_scripts import old_ir_model_environment
from slimext.compat.ppdet_checkout import find_checkout, imported_ppdet, same_ppdet

USAGE = "usage: python -m slimext.launch path/to/script.py [script arguments...]"


class LaunchError(Exception):
    """The script stopped on something the user can fix; the message says what."""


def _config_path(args):
    for i, arg in enumerate(args):
        if arg in ("-c", "--config") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return "model"


def _gpu_requested_on_cpu_paddle(error):
    import paddle

    text = str(error).lower()
    return not paddle.is_compiled_with_cuda() and ("gpu" in text or "cuda" in text)


def _ppdet_mismatch(script, error):
    """The one-line explanation when `error` is the script asking its ppdet for a name the
    imported ppdet lacks (tools of one PaddleDetection run with another's ppdet), else None."""
    missing = getattr(error, "name", None) or ""
    if missing.split(".")[0] != "ppdet":
        return None
    imported = imported_ppdet()
    checkout = find_checkout(script)
    if imported is None or (checkout is not None and same_ppdet(checkout, imported)):
        return None
    if checkout is None:
        return ("{} imports what {} lacks ({}); the script is not inside a PaddleDetection "
                "tree (no ppdet/ folder above it), so its version is unknown: run a script of "
                "the PaddleDetection that matches this ppdet, or install the ppdet the script "
                "was written for".format(script, imported.describe(), error))
    relative = os.path.relpath(script, checkout.root)
    if checkout.version and checkout.version != "0.0.0":
        install = "pip install paddledet=={}".format(checkout.version)
    else:
        install = ("make checkout-deps PPDET={root} then pip install --no-deps -e {root}"
                   .format(root=checkout.root))
    return ("{relative} is from the PaddleDetection checkout {root}, version {version}, but "
            "Python imported {imported}, which lacks what the script imports ({error}): run it "
            "from the checkout's root so its own ppdet is used (cd {root} && python -m "
            "slimext.launch {relative} ...), or install the ppdet of that checkout ({install})"
            .format(relative=relative, root=checkout.root, version=checkout.describe(),
                    imported=imported.describe(), error=error, install=install))


def _checkout_requirement_missing(script, error):
    """One line for a third-party module a checkout's ppdet or deploy code imports but the
    environment lacks (v2.7+ import imgaug at top level), else None."""
    missing = getattr(error, "name", None) or ""
    if not isinstance(error, ModuleNotFoundError) or not missing or \
            missing.split(".")[0] in ("ppdet", "slimext"):
        return None
    checkout = find_checkout(script) or find_checkout(os.getcwd(), levels=1)
    if checkout is None:
        return None
    return ("{} needs the module {!r}, which this environment lacks ({}): PaddleDetection "
            "{} lists its requirements in {}; `make checkout-deps PPDET={}` in slimext's "
            "folder installs them without moving the stack's pins".format(
                os.path.relpath(script, checkout.root), missing.split(".")[0], error,
                checkout.describe(), os.path.join(checkout.root, "requirements.txt"),
                checkout.root))


def _slim_builder_for(args):
    """ppdet's build_slim_model as the tool calls it, done by slimext's builder: the tool's
    -o is applied again right after the slim YAML (ppdet re-applies it only afterwards, so
    a slim YAML's pretrain_weights URL would win), the plan table prints in training only
    (a summary line elsewhere), and ppdet's own methods still build its way."""
    from slimext.compat.ppdet_internals import tool_overrides
    from slimext.slim.build import build_slim_model

    overrides = tool_overrides(args)

    def make(ppdet_builder):
        def build(cfg, slim_cfg, mode="train"):
            return build_slim_model(cfg, slim_cfg, mode=mode, overrides=overrides,
                                    ppdet_builder=ppdet_builder)
        return build

    return make


def launch(script, args):
    """Run `script` as __main__ with argv [script, *args]."""
    if not os.path.isfile(script):
        raise FileNotFoundError("script {!r} does not exist (give the path to a .py file, "
                                "e.g. PaddleDetection/tools/train.py)".format(script))
    import slimext
    from slimext.commands.console import filter_third_party_warnings, without_import_chatter

    filter_third_party_warnings()
    try:
        with without_import_chatter():
            slimext.register_with_ppdet()
    except ImportError as error:
        hint = _checkout_requirement_missing(script, error)
        if hint:
            raise LaunchError(hint)
        raise LaunchError("slimext could not register with ppdet ({}): install the missing "
                          "package, or run from a folder whose ppdet can be imported"
                          .format(error))
    from slimext.compat.ppdet_hooks import slim_model_builder_replaced
    from slimext.matcher import CheckpointError, WeightCheckConfigError, WeightCheckFailed
    from slimext.matcher.loading import checked_ppdet_pretrain_loading
    from slimext.slim.data_parallel import (RanksDisagree, ScaleSyncConfigError,
                                            scale_sync_on_every_trainer)

    script = os.path.abspath(script)
    sys.argv = [script] + list(args)
    sys.path.insert(0, os.path.dirname(script))
    try:
        with checked_ppdet_pretrain_loading(target=_config_path(args)), \
                scale_sync_on_every_trainer(), \
                slim_model_builder_replaced(_slim_builder_for(args)):
            runpy.run_path(script, run_name="__main__")
    except (WeightCheckFailed, WeightCheckConfigError, ScaleSyncConfigError,
            RanksDisagree) as error:
        raise LaunchError(str(error))
    except CheckpointError as error:
        raise LaunchError("pretrain_weights: {}".format(error))
    except ImportError as error:
        hint = _ppdet_mismatch(script, error) or _checkout_requirement_missing(script, error)
        if hint:
            raise LaunchError(hint)
        raise
    except (ValueError, RuntimeError, OSError) as error:
        if _gpu_requested_on_cpu_paddle(error):
            raise LaunchError("the config asks for a GPU (use_gpu: true, PaddleDetection's "
                              "runtime.yml default) but this Paddle is a CPU build: add "
                              "-o use_gpu=false")
        raise


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not argv else sys.stdout)
        sys.exit(2 if not argv else 0)
    # Before anything imports paddle: some flags are read only at import.
    for name, value in old_ir_model_environment(argv[1:]).items():
        os.environ[name] = value
        print("slimext.launch: {}={} for this script: its --model_dir holds an old-IR "
              "model.pdmodel and no model.json".format(name, value), file=sys.stderr)
    try:
        launch(argv[0], argv[1:])
    except LaunchError as error:
        print("Error: {}".format(error), file=sys.stderr)
        sys.exit(2)
    except FileNotFoundError as error:
        if error.filename is None:  # ours, not one raised inside the script
            print("Error: {}".format(error), file=sys.stderr)
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
