"""Progress is shown on a terminal (a pseudo-terminal here) and never in piped/CI output."""
import os
import pty
import select
import subprocess
import sys
import textwrap

from conftest import DEMO_CONFIG, REPO_ROOT

# A child that draws three steps of progress, as a tool's epoch does.
DRAW_THREE_STEPS = textwrap.dedent("""
    import sys
    from slimext.progress import StepProgress, open_console
    bar = StepProgress(open_console("--quiet" in sys.argv), "epoch 1/1", 3)
    for done in (1, 2, 3):
        bar.update(done, loss="1.250", eta="0:00")
    bar.close()
    print("log line on stdout")
""")


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    for key in ("SLIMEXT_PROGRESS_TTY", "SLIMEXT_QUIET"):
        env.pop(key, None)
    env.update(extra)
    return env


def _read_all(fd):
    chunks = []
    while True:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            return b"".join(chunks).decode(errors="replace")
        try:
            data = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            return b"".join(chunks).decode(errors="replace")
        if not data:
            return b"".join(chunks).decode(errors="replace")
        chunks.append(data)


def run_in_terminal(args, stdout_to=None, env=None, timeout=900):
    """Run `python args` with stderr (and stdout unless stdout_to) on a new pseudo-terminal;
    return what the terminal showed."""
    main, child = pty.openpty()
    stdout = open(stdout_to, "w") if stdout_to else child
    try:
        process = subprocess.Popen([sys.executable] + list(args), cwd=REPO_ROOT,
                                   stdin=subprocess.DEVNULL, stdout=stdout, stderr=child,
                                   env=env or _env())
        os.close(child)
        shown = []
        while process.poll() is None:
            shown.append(_read_all(main))
        process.wait(timeout=timeout)
        shown.append(_read_all(main))
    finally:
        os.close(main)
        if stdout_to:
            stdout.close()
    assert process.returncode == 0, "".join(shown)[-3000:]
    return "".join(shown)


def run_piped(args, env=None, timeout=900):
    result = subprocess.run([sys.executable] + list(args), cwd=REPO_ROOT, capture_output=True,
                            text=True, env=env or _env(), timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def test_bar_is_drawn_on_a_terminal_whose_stdout_goes_to_a_file(tmp_path):
    shown = run_in_terminal(["-c", DRAW_THREE_STEPS], stdout_to=str(tmp_path / "log.txt"))
    assert "epoch 1/1" in shown and "3/3" in shown and "loss 1.250" in shown
    assert "\r" in shown  # a live bar redraws in place
    logged = (tmp_path / "log.txt").read_text()
    assert "log line on stdout" in logged and "epoch" not in logged


def test_one_line_per_pass_when_logs_share_the_terminal():
    shown = run_in_terminal(["-c", DRAW_THREE_STEPS])
    assert "epoch 1/1 done in 0:00: loss 1.250, eta 0:00" in shown
    assert "log line on stdout" in shown


def test_nothing_when_piped_or_quiet():
    piped = run_piped(["-c", DRAW_THREE_STEPS])
    assert "log line on stdout" in piped and "epoch" not in piped
    assert "epoch" not in run_in_terminal(["-c", DRAW_THREE_STEPS, "--quiet"])
    assert "epoch" not in run_in_terminal(["-c", DRAW_THREE_STEPS], env=_env(SLIMEXT_QUIET="1"))


def test_handed_over_terminal_reaches_a_child_that_logs_to_a_file(tmp_path):
    """The demo's case: each step runs in a child whose stdout and stderr go to a log file."""
    parent = textwrap.dedent("""
        import subprocess, sys
        from slimext.progress import hand_over_terminal
        assert hand_over_terminal(quiet=False)
        with open(sys.argv[1], "w") as log:
            subprocess.run([sys.executable, "-c", sys.argv[2]], stdout=log, stderr=log,
                           check=True)
    """)
    log = str(tmp_path / "step.log")
    shown = run_in_terminal(["-c", parent, log, DRAW_THREE_STEPS])
    assert "epoch 1/1" in shown and "3/3" in shown
    with open(log) as f:
        logged = f.read()
    assert "log line on stdout" in logged and "epoch" not in logged


def test_train_shows_epochs_with_loss_and_eta_on_a_terminal_only(tmp_path, dataset_overrides):
    args = ["tools/train.py", "-c", DEMO_CONFIG, "--seed", "0", "-o", "epoch=2",
            "TrainReader.batch_size=8"] + dataset_overrides
    shown = run_in_terminal(args + ["--output_dir", str(tmp_path / "tty")],
                            stdout_to=str(tmp_path / "train.log"))
    for epoch in ("epoch 1/2", "epoch 2/2"):
        assert epoch in shown and "2/2, loss " in shown and "eta " in shown
    with open(tmp_path / "train.log") as f:
        assert "Epoch: [1]" in f.read()  # ppdet's own log lines are unchanged
    piped = run_piped(args + ["--output_dir", str(tmp_path / "piped")])
    assert "Epoch: [1]" in piped and "epoch 1/2" not in piped
