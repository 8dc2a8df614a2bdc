"""Environment settings Paddle reads when it is imported or first traces a model.

They are set before `import paddle` (slimext's package import does it first), because
Paddle 3 reads FLAGS_enable_pir_api once, at import.
"""
import os

from slimext.compat.versions import paddle_at_least

# Paddle 2.6 traces to_static with SOT fallback by default, and ppdet's export then fails
# reading `.main_program`; export needs full-graph tracing. (Paddle 2.6 and 3.x.)
FULL_GRAPH_TRACING = ("ENABLE_FALL_BACK", "False")

# Paddle 3 traces into PIR by default, but Paddle Inference runs oneDNN INT8 only on an old-IR
# (.pdmodel) program, and the fake-quant layers of PaddleSlim append old-IR ops: exports are
# traced in the old IR (see docs/paddle3.md).
OLD_IR_TRACING = ("FLAGS_enable_pir_api", "0")


def paddle_environment():
    """The variables this Paddle needs, as (name, value) pairs."""
    settings = [FULL_GRAPH_TRACING]
    if paddle_at_least(3, 0, 0):
        settings.append(OLD_IR_TRACING)
    return settings


def prepare_paddle_environment():
    """Set the variables unless the user set them; a user's own value is kept and checked
    where it matters (export_ir_problem)."""
    for name, value in paddle_environment():
        os.environ.setdefault(name, value)


def export_ir_problem():
    """None when exports will be traced into the old IR; else the reason and the fix."""
    if not paddle_at_least(3, 0, 0):
        return None
    import paddle

    if paddle.get_flags("FLAGS_enable_pir_api")["FLAGS_enable_pir_api"]:
        return ("Paddle {} traces into PIR here, and Paddle Inference runs oneDNN INT8 only on "
                "old-IR programs: `import slimext` before paddle, or set "
                "FLAGS_enable_pir_api=0 in the environment".format(paddle.__version__))
    return None
