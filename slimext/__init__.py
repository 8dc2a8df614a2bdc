"""slimext: residual-aware quantization-aware training for PaddleDetection models.

Importing the package registers its slim classes with ppdet's workspace, so a slim YAML
can say `slim: ResidualQAT` and the stock ppdet tools build it.
"""
# Paddle's shared library exports zlib symbols of its own; when Python's zlib module is
# loaded after it, compression (PNG writing in cv2, PIL, matplotlib) segfaults. Loading
# zlib first binds the system library.
import zlib  # noqa: F401,E402  (must precede any paddle import)

__version__ = "0.1.0"

# Paddle reads some settings only when it is imported (see slimext.compat.environment).
from slimext.compat.environment import prepare_paddle_environment  # noqa: E402

prepare_paddle_environment()


def register_with_ppdet():
    """Import the modules whose classes carry ppdet's @register (idempotent)."""
    from slimext import slim  # noqa: F401
    from slimext.compat import apply_fixes

    apply_fixes()


try:
    register_with_ppdet()
except ImportError as error:  # paddle or ppdet missing: keep the pure-python parts usable
    _IMPORT_ERROR = error
