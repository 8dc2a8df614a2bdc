"""The environment a PaddleDetection deploy script needs to open a slimext export.

slimext's exports are old-IR programs (`model.pdmodel`: oneDNN INT8 runs only on those).
develop's `deploy/python/infer.py` on Paddle 3 builds `Config(model_dir, "model")`, which
opens `model.json` while Paddle's PIR API is on (its default); with `FLAGS_enable_pir_api=0`
it opens `model.pdmodel`. v2.6.0's and release/2.7.1's infer.py pass the `.pdmodel` path
and run either way. The flag is read when paddle is imported, so it is decided from the
script's `--model_dir` before anything imports paddle.
"""
import os

from slimext.compat.versions import paddle_at_least

PIR_FLAG = "FLAGS_enable_pir_api"
OLD_IR_FILES = ("model.pdmodel", "inference.pdmodel")
PIR_FILES = ("model.json", "inference.json")


def model_dir_argument(args):
    for i, arg in enumerate(args):
        if arg == "--model_dir" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--model_dir="):
            return arg.split("=", 1)[1]
    return None


def holds_only_old_ir_program(folder):
    def has(names):
        return any(os.path.isfile(os.path.join(folder, name)) for name in names)

    return has(OLD_IR_FILES) and not has(PIR_FILES)


def old_ir_model_environment(args, environ=None):
    """{PIR_FLAG: "0"} when the script's --model_dir holds only an old-IR program on Paddle 3
    and the user has not set the flag; {} otherwise."""
    environ = os.environ if environ is None else environ
    folder = model_dir_argument(args)
    if folder is None or PIR_FLAG in environ or not paddle_at_least(3, 0, 0):
        return {}
    return {PIR_FLAG: "0"} if holds_only_old_ir_program(folder) else {}
