"""Console progress for long steps, for a person watching a terminal; silent anywhere else.

Logs stay where they were (ppdet's logger, the demo's log files); progress is extra output
on the terminal only:
- a live bar per epoch (tqdm) when the terminal is free of log lines: the demo (its steps
  log to files) or a tool whose stdout is redirected to a file;
- one line per epoch when ppdet's log lines share the terminal (a redrawn bar would garble
  them).
Nothing is shown when neither stdout nor stderr is a TTY (CI logs, pipes), with `--quiet`,
or with SLIMEXT_QUIET=1. A parent that sends a child's output to a log file hands its
terminal to the child with `hand_over_terminal()` (SLIMEXT_PROGRESS_TTY=/dev/pts/N).
"""
import os
import sys
import time

TTY_VARIABLE = "SLIMEXT_PROGRESS_TTY"
QUIET_VARIABLE = "SLIMEXT_QUIET"


class Console:
    """Where progress goes: `stream` (None: nowhere) and whether a live bar may redraw there."""

    def __init__(self, stream=None, live=False):
        self.stream, self.live = stream, live

    @property
    def enabled(self):
        return self.stream is not None

    def line(self, text):
        """One permanent line (no-op when disabled)."""
        if self.stream is not None:
            self.stream.write(text + "\n")
            self.stream.flush()


def _is_tty(stream):
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False


def _quiet_from_environment():
    return os.environ.get(QUIET_VARIABLE, "").strip() not in ("", "0")


def open_console(quiet=False):
    """The Console for this process, from --quiet, the environment and the std streams."""
    if quiet or _quiet_from_environment():
        return Console()
    handed = os.environ.get(TTY_VARIABLE)
    if handed:
        try:
            # Line-buffered: a bar's redraws must reach the terminal as they happen.
            return Console(open(handed, "w", buffering=1), live=True)
        except OSError:
            return Console()
    if _is_tty(sys.stderr):
        # Logs go to stdout: a bar on stderr is clean only if stdout is elsewhere.
        return Console(sys.stderr, live=not _is_tty(sys.stdout))
    return Console()


def hand_over_terminal(quiet=False):
    """Let child processes whose output goes to log files show progress on this terminal.

    Returns True when progress will be shown (stderr is a TTY and not quiet)."""
    os.environ.pop(TTY_VARIABLE, None)
    if quiet:
        os.environ[QUIET_VARIABLE] = "1"
        return False
    if not _is_tty(sys.stderr):
        return False
    os.environ[TTY_VARIABLE] = os.ttyname(sys.stderr.fileno())
    return True


def clock(seconds):
    """Seconds as m:ss or h:mm:ss."""
    minutes, seconds = divmod(int(round(max(seconds, 0))), 60)
    hours, minutes = divmod(minutes, 60)
    return "{}:{:02d}:{:02d}".format(hours, minutes, seconds) if hours else \
        "{}:{:02d}".format(minutes, seconds)


def _terminal_width(stream):
    """Columns of the terminal, or None where unknown (a pseudo-terminal reports 0)."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return None
    return columns if columns >= 40 else None


class StepProgress:
    """Progress over `total` steps of one pass (an epoch, an evaluation, a calibration).

    update(done, **fields) shows `desc [bar] done/total, fields...`; close() leaves one line
    behind. The caller owns the numbers; this only draws them."""

    def __init__(self, console, desc, total):
        self.console, self.desc, self.total = console, desc, total
        self.start = time.time()
        self.bar = None
        self.last = ""
        if console.enabled and console.live:
            from tqdm import tqdm

            width = _terminal_width(console.stream)
            # A terminal of unknown size (0x0) would make tqdm hide the bar: give it one.
            self.bar = tqdm(total=total, desc=desc, file=console.stream, leave=True,
                            ncols=width or 100, nrows=None if width else 24,
                            dynamic_ncols=bool(width), mininterval=0.5,
                            bar_format="{desc} |{bar}| {n_fmt}/{total_fmt}{postfix}")

    def update(self, done, **fields):
        self.last = ", ".join("{} {}".format(k, v) for k, v in fields.items())
        if self.bar is not None:
            self.bar.set_postfix_str(self.last, refresh=False)
            self.bar.update(done - self.bar.n)

    def close(self, **fields):
        if fields:
            self.last = ", ".join("{} {}".format(k, v) for k, v in fields.items())
        if self.bar is not None:
            self.bar.set_postfix_str(self.last, refresh=False)
            self.bar.close()
            self.bar = None
        elif self.console.enabled:
            self.console.line("{} done in {}{}".format(
                self.desc, clock(time.time() - self.start),
                ": " + self.last if self.last else ""))


class EchoLogger:
    """A logger (info/warning) that also writes each info line to a live console: there the
    log lines (stdout, or a log file) are not on the terminal the person is watching."""

    def __init__(self, logger, console):
        self.logger, self.console = logger, console

    def info(self, message, *args):
        self.logger.info(message, *args)
        if self.console.live:
            self.console.line(message % args if args else message)

    def warning(self, message, *args):
        self.logger.warning(message, *args)
