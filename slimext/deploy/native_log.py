"""Capture what Paddle Inference's C++ side writes to stderr while a predictor is built.

`Config.disable_glog_info()` silences glog, but the analysis passes print their summaries
(`---    squashed 107 dequantize-quantize pairs`) straight to the process's stderr, below
Python's `sys.stderr`. Only redirecting file descriptor 2 keeps a console clean; the text
is kept so `--verbose` can show it and a failure can still print it.
"""
import contextlib
import os
import sys
import tempfile


class NativeLog:
    """The captured text, filled in when the `with` block ends."""

    def __init__(self):
        self.text = ""


@contextlib.contextmanager
def capture_native_stderr(echo=False):
    """Redirect fd 2 into a temporary file for the block; echo it afterwards if asked.

    On an exception the captured text is always written back, so a C++ error message
    that only went to stderr is not lost.
    """
    log = NativeLog()
    sys.stderr.flush()
    saved_fd = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        failed = False
        try:
            yield log
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            sink.seek(0)
            log.text = sink.read().decode("utf-8", "replace")
            if (echo or failed) and log.text:
                sys.stderr.write(log.text)
                sys.stderr.flush()
