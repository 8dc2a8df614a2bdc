"""Undo what third-party imports change process-wide on slimext's behalf.

ppdet installs `warnings.filterwarnings("ignore")` when its MOT modules are imported (every
`import ppdet` does), which would hide every warning of the user's program. Paddle's own
import effects (its root-logger handler, OMP settings) are Paddle's: the user imported it.
"""
import warnings
from contextlib import contextmanager


@contextmanager
def preserved_warning_filters():
    """Imports inside the block leave `warnings.filters` as it was before it."""
    with warnings.catch_warnings():  # restores the filters on exit
        yield
