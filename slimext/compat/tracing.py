"""The one scope in which slimext traces models into static programs: `export_tracing()`.

Exports, the coverage trace and export editing need two things Paddle does not do by
default, and both are switched on only inside this block and put back when it ends (raised
or not), so the rest of the user's process keeps Paddle's defaults:

- full-graph tracing: Paddle 2.6 and 3.x trace `to_static` with SOT fallback unless
  `ENABLE_FALL_BACK` is False, and ppdet's `Trainer.export` then fails reading
  `.main_program` (`Can't call main_program when full_graph=False`). Paddle reads the
  variable when `to_static` is called, so it is set for the block only, unless the user set
  it (their value is kept).
- the old IR (Paddle >= 3): Paddle Inference runs oneDNN INT8 only on an old-IR `.pdmodel`,
  and PaddleSlim's fake-quant layers append old-IR ops. Paddle's own
  `paddle.pir_utils.DygraphOldIrGuard` switches the tracing IR in dygraph mode, and the
  stand-ins of `legacy_static_ops` let the C++-only tensor functions build old-IR ops.

While a block runs, the switch is process-wide (Paddle's flag is global): a lock keeps two
blocks of different threads from interleaving, and blocks nest.
"""
import os
import threading
from contextlib import contextmanager

from slimext.compat.versions import paddle_at_least

FULL_GRAPH = ("ENABLE_FALL_BACK", "False")

_LOCK = threading.RLock()
_depth = 0


@contextmanager
def export_tracing():
    """Trace in the old IR (Paddle 3) with full-graph to_static inside the block."""
    global _depth
    with _LOCK:
        if _depth:
            _depth += 1
            try:
                yield
            finally:
                _depth -= 1
            return
        _depth = 1
        try:
            with _full_graph_environment(), _old_ir():
                yield
        finally:
            _depth = 0


@contextmanager
def _full_graph_environment():
    name, value = FULL_GRAPH
    if name in os.environ:  # the user's own choice
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


@contextmanager
def _old_ir():
    if not paddle_at_least(3, 0, 0):
        yield
        return
    import paddle.pir_utils

    from slimext.compat.legacy_static_ops import (install_old_ir_fallbacks,
                                                  remove_old_ir_fallbacks)

    with paddle.pir_utils.DygraphOldIrGuard():
        undo = install_old_ir_fallbacks()
        try:
            yield
        finally:
            remove_old_ir_fallbacks(undo)
