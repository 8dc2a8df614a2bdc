"""Run a PaddleDetection tool script with slimext's ppdet classes registered.

    python -m slimext.launch path/to/PaddleDetection/tools/train.py -c CFG --slim_config S

The script runs as `python script.py args...` would run it (its folder first on sys.path,
sys.argv set, __name__ == "__main__"), after `import slimext` has added slimext's classes
to ppdet's registry, so its YAML can name them. ppdet is already imported by then, so the
script uses the installed ppdet even if it puts a checkout's folder on sys.path.
"""
import os
import runpy
import sys

USAGE = "usage: python -m slimext.launch path/to/script.py [script arguments...]"


def launch(script, args):
    """Run `script` as __main__ with argv [script, *args]."""
    if not os.path.isfile(script):
        raise FileNotFoundError("script {!r} does not exist (give the path to a .py file, "
                                "e.g. PaddleDetection/tools/train.py)".format(script))
    from slimext.runtime import prepare_paddle_environment

    prepare_paddle_environment()
    import slimext  # noqa: F401  (registration happens on import)

    script = os.path.abspath(script)
    sys.argv = [script] + list(args)
    sys.path.insert(0, os.path.dirname(script))
    runpy.run_path(script, run_name="__main__")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not argv else sys.stdout)
        sys.exit(2 if not argv else 0)
    try:
        launch(argv[0], argv[1:])
    except FileNotFoundError as error:
        if error.filename is None:  # ours, not one raised inside the script
            print("Error: {}".format(error), file=sys.stderr)
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
