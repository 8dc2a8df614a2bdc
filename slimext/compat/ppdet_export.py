"""ppdet's `Trainer.export` and `Trainer.post_quant` traced inside slimext's export scope.

PaddleDetection's own `tools/export_model.py` (run through `python -m slimext.launch`) calls
`Trainer.export`, which calls `paddle.jit.to_static` and reads `.main_program`: on Paddle 3
that writes a PIR `model.json` that Paddle Inference's oneDNN INT8 passes cannot take, and
under SOT fallback it fails. Inside `export_tracing()` it writes the old-IR `.pdmodel`.
"""
import functools


def _in_export_scope(export):
    @functools.wraps(export)
    def wrapped(*args, **kwargs):
        from slimext.compat.tracing import export_tracing

        with export_tracing():
            return export(*args, **kwargs)

    wrapped._slimext_export_scope = True
    return wrapped


EXPORTING_METHODS = ("export", "post_quant")


def trace_ppdet_exports_in_export_scope():
    from ppdet.engine import Trainer

    for name in EXPORTING_METHODS:
        method = getattr(Trainer, name)
        if not getattr(method, "_slimext_export_scope", False):
            setattr(Trainer, name, _in_export_scope(method))
    return ["Trainer." + name for name in EXPORTING_METHODS]
