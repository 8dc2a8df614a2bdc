"""Where a Paddle Inference CPU run spends its time, op by op (Paddle's own profiler).

oneDNN verbose (slimext.deploy.onednn_profile) times the primitives alone; on a small
detector most of a run is outside them: each Paddle kernel also builds or looks up its
primitive, its memory descriptors and (INT8) its scales, and the executor dispatches it.
Paddle's profiler (`Config.enable_profile()`) times whole kernels; its summary, printed
when the predictor is destroyed, is what this module reads:

    thread0::fused_conv2d    6860    585.025    0.03376    7.94848    0.0852806    0.695616

(event, calls, total, min, max, average ms, ratio). The profiler cannot be reset, and the
first run (primitive creation) costs many steady runs, so two worker processes run the
export, one with the timed runs and one with the warm-up alone; their difference per timed
run is what each op type costs in steady state, and how many ops a program runs.

    profile = profile_ops("out/qdq_export", "int8")
    print(format_op_profile(profile))
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

# One event line of the summary; nested events (indented) are the executor's own.
_EVENT = re.compile(r"^thread\d+::(\S+)\s+(\d+)\s+([\d.]+)\s")


def parse_event_summary(text, runs):
    """{op_type: (calls per run, ms per run)} from the profiler's printed summary."""
    ops = {}
    for line in text.splitlines():
        match = _EVENT.match(line.strip())
        if not match or match.group(1).startswith(("Executor", "load_combine")):
            continue
        calls, total = int(match.group(2)), float(match.group(3))
        old_calls, old_total = ops.get(match.group(1), (0, 0.0))
        ops[match.group(1)] = (old_calls + calls, old_total + total)
    return {op: (calls / runs, total / runs) for op, (calls, total) in ops.items()}


def _worker(model_dir, precision, runs, warmup, cpu_threads):
    from paddle import inference

    from slimext.deploy.preprocess import bench_image
    from slimext.deploy.predictor import create_config
    from slimext.deploy.preprocess import Preprocess, read_infer_cfg

    config = create_config(model_dir, precision, cpu_threads)
    config.enable_profile()
    predictor = inference.create_predictor(config)
    inputs = Preprocess(read_infer_cfg(model_dir)["Preprocess"])(bench_image(model_dir))
    for name in predictor.get_input_names():
        predictor.get_input_handle(name).copy_from_cpu(inputs[name])
    for _ in range(warmup):
        predictor.run()
    start = time.perf_counter()
    for _ in range(runs):
        predictor.run()
    wall_ms = (time.perf_counter() - start) * 1000.0 / max(runs, 1)
    print(json.dumps({"wall_ms": wall_ms}), flush=True)
    del predictor   # prints the summary


def _profiled_totals(model_dir, precision, runs, warmup, cpu_threads, timeout):
    """({op: (calls, total ms)} over all runs of one worker, its timed ms per run)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    # The profiler also writes profile.log into the working directory: a scratch one.
    with tempfile.TemporaryDirectory(prefix="slimext_op_profile_") as scratch:
        result = subprocess.run(
            [sys.executable, "-m", "slimext.deploy.op_profile", os.path.abspath(model_dir),
             precision, str(runs), str(warmup), str(cpu_threads)],
            capture_output=True, text=True, timeout=timeout, env=env, cwd=scratch)
    if result.returncode != 0:
        raise RuntimeError("profiling {} ({}) failed:\n{}".format(
            model_dir, precision, result.stderr[-2000:]))
    totals = parse_event_summary(result.stdout + result.stderr, 1)
    if not totals:
        raise RuntimeError("Paddle's profiler printed no op summary for {} ({})".format(
            model_dir, precision))
    timing = next(json.loads(line) for line in result.stdout.splitlines()
                  if line.startswith("{\"wall_ms\""))
    return totals, timing["wall_ms"]


class OpProfileUnavailable(RuntimeError):
    """The installed Paddle's inference profiler prints no op summary."""


def check_available():
    """Paddle 2.6's Paddle Inference accepts enable_profile() but prints nothing."""
    import paddle

    from slimext.compat.versions import paddle_at_least

    if not paddle_at_least(3, 0, 0):
        raise OpProfileUnavailable(
            "Paddle Inference {} prints no op profile (it does from Paddle 3.0 on): run it "
            "on the paddle33 stack, or use slimext.deploy.onednn_profile, which works on "
            "both".format(paddle.__version__))


def profile_ops(model_dir, precision, runs=30, warmup=5, cpu_threads=2, timeout=600):
    """Steady-state ms and calls per run of each op type ('fp32', 'onednn' or 'int8')."""
    check_available()
    timed, wall_ms = _profiled_totals(model_dir, precision, runs, warmup, cpu_threads, timeout)
    warm, _ = _profiled_totals(model_dir, precision, 0, warmup, cpu_threads, timeout)
    rows = []
    for op, (calls, total) in timed.items():
        warm_calls, warm_total = warm.get(op, (0, 0.0))
        rows.append({"op": op, "calls": (calls - warm_calls) / runs,
                     "ms": max(total - warm_total, 0.0) / runs})
    rows.sort(key=lambda row: -row["ms"])
    return {"model_dir": model_dir, "precision": precision, "runs": runs,
            "wall_ms": wall_ms, "ops_per_run": sum(r["calls"] for r in rows),
            "kernel_ms": sum(r["ms"] for r in rows), "ops": rows}


def format_op_profile(profile, top=16):
    """A markdown table of the op types that take the most time per run."""
    lines = ["{} ({}): {:.1f} ms per run with the profiler on, {:.0f} ops per run, "
             "{:.1f} ms in kernels".format(
                 os.path.basename(os.path.normpath(profile["model_dir"])),
                 profile["precision"], profile["wall_ms"], profile["ops_per_run"],
                 profile["kernel_ms"]),
             "", "| op | calls/run | ms/run | us/call |", "|---|---|---|---|"]
    for row in profile["ops"][:top]:
        lines.append("| {} | {:.0f} | {:.2f} | {:.0f} |".format(
            row["op"], row["calls"], row["ms"], 1000.0 * row["ms"] / max(row["calls"], 1e-9)))
    return "\n".join(lines)


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
