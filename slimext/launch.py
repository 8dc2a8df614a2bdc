"""Run a PaddleDetection tool script with slimext's classes, fixes and weight check.

    python -m slimext.launch path/to/PaddleDetection/tools/train.py -c CFG --slim_config S

The script runs as `python script.py args...` would run it (its folder first on sys.path,
sys.argv set, __name__ == "__main__"), after `slimext.register_with_ppdet()` has added
slimext's classes to ppdet's registry (so its YAML can name them) and applied slimext's
compatibility fixes (ppdet's exports then trace into the old IR that INT8 inference needs).
ppdet is already imported by then, so the script uses the installed ppdet even if it puts
a checkout's folder on sys.path. The config's `pretrain_weights` load through the weight
check, as in slimext's own tools: a checkpoint that does not fit stops the script before
any step with one report and exit status 2. Under `python -m paddle.distributed.launch`,
quantizer scales are kept equal across ranks as with slimext's own tools/train.py.
"""
import os
import runpy
import sys

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
        raise LaunchError("slimext could not register with ppdet ({}): install the missing "
                          "package, or run from a folder whose ppdet can be imported"
                          .format(error))
    from slimext.matcher import CheckpointError, WeightCheckConfigError, WeightCheckFailed
    from slimext.matcher.loading import checked_ppdet_pretrain_loading
    from slimext.slim.data_parallel import (RanksDisagree, ScaleSyncConfigError,
                                            scale_sync_on_every_trainer)

    script = os.path.abspath(script)
    sys.argv = [script] + list(args)
    sys.path.insert(0, os.path.dirname(script))
    try:
        with checked_ppdet_pretrain_loading(target=_config_path(args)), \
                scale_sync_on_every_trainer():
            runpy.run_path(script, run_name="__main__")
    except (WeightCheckFailed, WeightCheckConfigError, ScaleSyncConfigError,
            RanksDisagree) as error:
        raise LaunchError(str(error))
    except CheckpointError as error:
        raise LaunchError("pretrain_weights: {}".format(error))
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
