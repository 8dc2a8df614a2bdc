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
import sys
import warnings

NOISE_PRINTED_BY_PPDET = ("Unable to use numba in PP-Tracking",)


def filter_third_party_warnings():
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)


class _ChatterFilter:
    """Stands in for sys.stdout: drops known import chatter while filtering, and passes
    everything through afterwards. Loggers created meanwhile (ppdet makes its handlers at
    import, holding the stream they saw) keep writing through it to the real stdout."""

    def __init__(self, target):
        self._target = target
        self._pending = ""
        self.filtering = True

    def write(self, text):
        if not self.filtering:
            return self._target.write(text)
        self._pending += text
        lines = self._pending.split("\n")
        self._pending = lines.pop()
        for line in lines:
            if not any(noise in line for noise in NOISE_PRINTED_BY_PPDET):
                self._target.write(line + "\n")
        return len(text)

    def stop_filtering(self):
        self.filtering = False
        if self._pending:
            self._target.write(self._pending)
            self._pending = ""

    def __getattr__(self, name):  # flush, fileno, isatty, encoding, ...
        return getattr(self._target, name)


@contextlib.contextmanager
def without_import_chatter():
    """Lines printed inside the block reach stdout unless they are known import chatter."""
    stream = _ChatterFilter(sys.stdout)
    sys.stdout = stream
    try:
        yield
    finally:
        stream.stop_filtering()
        if sys.stdout is stream:
            sys.stdout = stream._target
