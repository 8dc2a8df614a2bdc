"""slimext: residual-aware quantization-aware training for PaddleDetection models.

Importing slimext or any of its subpackages changes nothing in the process: no environment
variable, no Paddle flag, no patched function, no warning filter or logging handler.

- `slimext.register_with_ppdet()` adds the slim classes to ppdet's registry (so a slim YAML
  can say `slim: ResidualQAT`) and applies the compatibility fixes this ppdet and Paddle
  need (`python -m slimext.compat` lists them). slimext's tools and `python -m
  slimext.launch` call it; a script of your own that builds slim models through ppdet calls
  it once.
- Exports are traced into the old IR only inside `slimext.compat.tracing.export_tracing()`.
- Join interception (`slimext.quant`) wraps Paddle's join functions on the first
  quantization; the wrappers take exactly Paddle's arguments and pass them through.
"""
# Paddle's shared library exports zlib symbols of its own; when Python's zlib module is
# loaded after it, compression (PNG writing in cv2, PIL, matplotlib) segfaults. Loading
# zlib (a standard module, nothing else) first binds the system library.
import zlib  # noqa: F401  (must precede any paddle import)

__version__ = "0.1.0"


def register_with_ppdet():
    """Register slimext's slim classes with ppdet and apply the compatibility fixes
    (idempotent). ppdet's import-time changes to the process (its blanket warning filter)
    are undone; raises ImportError when ppdet or paddle cannot be imported."""
    from slimext.compat.process_state import preserved_warning_filters

    with preserved_warning_filters():
        # Their classes carry ppdet's @register.
        from slimext.slim import residual_ptq, residual_qat  # noqa: F401
        from slimext.compat import apply_fixes

        apply_fixes()
