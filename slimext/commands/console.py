"""What a tool's console leaves out: third-party import chatter that says nothing about
the run (set up by `run_command`, in the tool's own process only).

- Paddle warns at import that ccache is missing, which matters only to someone compiling
  custom C++ operators;
- ppdet prints "Unable to use numba in PP-Tracking" twice while importing its multi-object
  tracking modules, which detection never uses;
- deprecation warnings of Paddle, ppdet and their dependencies.
Everything else they print or warn still reaches the console.
"""
import contextlib
import io
import sys
import warnings

NOISE_PRINTED_BY_PPDET = ("Unable to use numba in PP-Tracking",)


def filter_third_party_warnings():
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)


@contextlib.contextmanager
def without_import_chatter():
    """Lines printed inside the block reach stdout unless they are known import chatter."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            yield
    finally:
        kept = [line for line in captured.getvalue().splitlines(True)
                if not any(noise in line for noise in NOISE_PRINTED_BY_PPDET)]
        sys.stdout.write("".join(kept))
