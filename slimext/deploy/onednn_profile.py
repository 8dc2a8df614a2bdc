"""Where oneDNN time goes in a Paddle Inference run: primitives by kind, data type, time.

oneDNN prints one line per executed primitive when ONEDNN_VERBOSE=1 is set before it
loads, e.g. `onednn_verbose,exec,cpu,convolution,jit_int8:avx512_core_vnni,...,0.094`
(the last field is milliseconds). A worker process runs the export with it set, marks the
steady-state runs, and this module sums the lines: how much of an INT8 run is INT8
convolution, how much fp32 eltwise/binary islands (hardswish, SE multiply), concat,
resampling, and the reorders between fp32 and INT8. What is not oneDNN time (Paddle's own
kernels such as NMS, framework overhead) is the wall time minus the oneDNN sum.

    profile = profile_onednn("out/qdq_export", "int8")
    print(format_profile(profile))
"""
import collections
import json
import os
import re
import subprocess
import sys
import time

START_MARK = "slimext-profile-start"
END_MARK = "slimext-profile-end"
INT8_TYPES = ("s8", "u8")


def _dtype(descriptor, tensor):
    # `src_s8::blocked...` (oneDNN 3.2, Paddle 2.6) or `src:s8:a:blocked...` (Paddle 3.3).
    match = re.search(r"(?:^|\s){}[_:]([a-z0-9]+):".format(tensor), descriptor)
    return match.group(1) if match else None


def _precision(dtype):
    if dtype in INT8_TYPES:
        return "int8"
    return {"f32": "fp32", "bf16": "bf16", "s32": "int32"}.get(dtype, dtype or "?")


def primitive_key(fields):
    """(kind, detail) for one `exec` verbose line split on commas."""
    exec_at = fields.index("exec")
    kind = fields[exec_at + 2]
    descriptor = next((f for f in fields[exec_at + 3:]
                       if re.search(r"(?:^|\s)(src|data)[_:]", f)), "")
    src = _dtype(descriptor, "src") or _dtype(descriptor, "data")
    if kind == "reorder":
        return kind, "{}->{}".format(_precision(src), _precision(_dtype(descriptor, "dst")))
    detail = _precision(src)
    if kind == "convolution":
        # Depthwise (grouped) convs take other kernels than 1x1 and kxk ones.
        shape = fields[-2]
        window = re.search(r"kh(\d+)", shape)
        detail += " depthwise" if re.match(r"g\d+", shape) else (
            " 1x1" if window and window.group(1) == "1" else " kxk")
        return kind, detail
    alg = next((f[4:].split()[0] for f in fields if f.startswith("alg:")), "")
    if kind in ("eltwise", "binary", "pooling", "resampling") and alg:
        detail = "{} {}".format(alg.replace("eltwise_", "").replace("binary_", "")
                                .replace("pooling_", "").replace("resampling_", ""), detail)
    return kind, detail


def summarize_verbose(lines, runs):
    """{(kind, detail): [calls, ms]} per run from the verbose lines between the marks."""
    totals = collections.defaultdict(lambda: [0, 0.0])
    inside = False
    for line in lines:
        if START_MARK in line:
            inside = True
        elif END_MARK in line:
            break
        elif inside and line.startswith(("onednn_verbose,", "dnnl_verbose,")):
            fields = line.strip().split(",")
            if "exec" not in fields:
                continue
            try:
                ms = float(fields[-1])
            except ValueError:
                continue
            entry = totals[primitive_key(fields)]
            entry[0] += 1
            entry[1] += ms
    return {key: [calls / runs, ms / runs] for key, (calls, ms) in totals.items()}


def _worker(model_dir, precision, runs, warmup, cpu_threads):
    from slimext.deploy.preprocess import bench_image
    from slimext.deploy.runtimes import create_detector

    detector = create_detector(model_dir, "paddle", precision, cpu_threads)
    inputs = detector.preprocess(bench_image(model_dir))
    for _ in range(warmup):
        detector.run_raw(inputs)
    print(START_MARK, flush=True)
    start = time.perf_counter()
    for _ in range(runs):
        detector.run_raw(inputs)
    wall_ms = (time.perf_counter() - start) * 1000.0 / runs
    print(END_MARK, flush=True)
    print(json.dumps({"wall_ms": wall_ms}), flush=True)


def profile_onednn(model_dir, precision, runs=10, warmup=5, cpu_threads=2, timeout=600):
    """Profile one Paddle oneDNN run ('onednn' or 'int8') in a fresh process; a dict."""
    env = dict(os.environ, ONEDNN_VERBOSE="1", DNNL_VERBOSE="1")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    result = subprocess.run(
        [sys.executable, "-m", "slimext.deploy.onednn_profile", model_dir, precision,
         str(runs), str(warmup), str(cpu_threads)],
        capture_output=True, text=True, timeout=timeout, env=env)
    if result.returncode != 0:
        raise RuntimeError("profiling {} ({}) failed:\n{}".format(
            model_dir, precision, result.stderr[-2000:]))
    lines = result.stdout.splitlines()
    wall_ms = json.loads(lines[-1])["wall_ms"]
    summary = summarize_verbose(lines, runs)
    onednn_ms = sum(ms for _, ms in summary.values())
    primitives = sorted(({"kind": kind, "detail": detail, "calls": calls, "ms": ms}
                         for (kind, detail), (calls, ms) in summary.items()),
                        key=lambda p: -p["ms"])
    version = next((l.split(",")[2] for l in lines if l.startswith("onednn_verbose,info,oneDNN")),
                   None)
    return {"model_dir": model_dir, "precision": precision, "runs": runs,
            "wall_ms": wall_ms, "onednn_ms": onednn_ms, "outside_onednn_ms": wall_ms - onednn_ms,
            "onednn_version": version, "primitives": primitives}


def format_profile(profile):
    """A markdown table: per-run calls and ms of each primitive kind, and the remainder."""
    lines = ["{} ({}): {:.1f} ms per run wall, {:.1f} ms in oneDNN primitives "
             "(verbose timing adds overhead)".format(
                 os.path.basename(os.path.normpath(profile["model_dir"])),
                 profile["precision"], profile["wall_ms"], profile["onednn_ms"]),
             "", "| primitive | data | calls/run | ms/run | share of wall |",
             "|---|---|---|---|---|"]
    for p in profile["primitives"]:
        lines.append("| {} | {} | {:.0f} | {:.2f} | {:.0%} |".format(
            p["kind"], p["detail"], p["calls"], p["ms"], p["ms"] / profile["wall_ms"]))
    lines.append("| outside oneDNN (Paddle kernels, framework) | | | {:.2f} | {:.0%} |".format(
        profile["outside_onednn_ms"], profile["outside_onednn_ms"] / profile["wall_ms"]))
    return "\n".join(lines)


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
