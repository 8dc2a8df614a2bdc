"""Which runtime and precision to ship, measured on this machine.

    result = run_bench(["out/float_export", "out/qdq_export"], runtimes=("paddle", "openvino"))
    print(format_table(result)); print(result["recommendation"])

Every precision that applies to an export is timed (a float export: plain fp32, oneDNN
fp32, OpenVINO fp32; a QDQ export: oneDNN INT8, OpenVINO INT8), median and p90 over warm
runs, each INT8 run confirmed to have used INT8 kernels. The result carries the machine's
ISA line and the runtime versions: an INT8 speed-up is a property of the CPU (VNNI/AMX).
All cases are loaded in this process, then timed round-robin (one run of each per
round) so that a change in machine load shows in every case alike, not in one.
"""
import os
import sys
import time


from slimext.deploy.hardware import describe_machine, isa_line
from slimext.deploy.int8_kernels import Int8NotUsedError, is_qdq_program
from slimext.deploy.latency import latency_of
from slimext.deploy.predictor import check_model_dir
from slimext.deploy.preprocess import bench_image
from slimext.deploy.runtimes import create_detector

# (runtime, precision) -> label, and whether it is an fp32 or an INT8 way to deploy.
CASES = {
    ("paddle", "fp32"): ("Paddle plain fp32", "fp32"),
    ("paddle", "onednn"): ("Paddle oneDNN fp32", "fp32"),
    ("paddle", "int8"): ("Paddle oneDNN INT8", "int8"),
    ("openvino", "fp32"): ("OpenVINO fp32", "fp32"),
    ("openvino", "int8"): ("OpenVINO INT8", "int8"),
    ("onnxruntime", "fp32"): ("ONNX Runtime fp32", "fp32"),
    ("onnxruntime", "int8"): ("ONNX Runtime INT8", "int8"),
}
FLOAT_PRECISIONS = {"paddle": ("fp32", "onednn"), "openvino": ("fp32",),
                    "onnxruntime": ("fp32",)}
QDQ_PRECISIONS = {"paddle": ("int8",), "openvino": ("int8",), "onnxruntime": ("int8",)}
# INT8 must beat the best fp32 by this much to be worth its accuracy risk.
MIN_SPEEDUP = 1.1


def available_runtimes():
    """'paddle', plus 'openvino' and 'onnxruntime' when they are installed."""
    from slimext.deploy.onnxruntime_runtime import onnxruntime_version
    from slimext.deploy.openvino_runtime import openvino_version

    return ("paddle",) + (("openvino",) if openvino_version() else ()) + \
        (("onnxruntime",) if onnxruntime_version() else ())


def applicable_cases(model_dir, runtimes):
    """[(runtime, precision)] that make sense for this export on these runtimes."""
    check_model_dir(model_dir)
    table = QDQ_PRECISIONS if is_qdq_program(os.path.join(model_dir, "model.pdmodel")) \
        else FLOAT_PRECISIONS
    return [(runtime, precision) for runtime in runtimes for precision in table[runtime]]


def _load_case(model_dir, runtime, precision, image, cpu_threads, warmup):
    """A row and a ready (warmed-up) run callable, or the row with the reason it failed."""
    label, kind = CASES[(runtime, precision)]
    row = {"model_dir": model_dir, "runtime": runtime, "precision": precision,
           "label": label, "kind": kind}
    try:
        detector = create_detector(model_dir, runtime, precision, cpu_threads)
        inputs = detector.preprocess(image)
        for _ in range(warmup):   # oneDNN and OpenVINO build their kernels on first runs
            detector.run_raw(inputs)
    except (Int8NotUsedError, RuntimeError, ValueError, ImportError) as error:
        text = str(error).strip()
        row["error"] = "{}: {}".format(type(error).__name__,
                                       text.splitlines()[-1] if text else "")
        return row, None
    if detector.int8_report is not None:
        row["int8_kernels"] = detector.int8_report.as_dict()
    return row, (lambda: detector.run_raw(inputs))


def time_interleaved(runners, runs, max_seconds, on_run=None):
    """Time the runners round-robin, one run each per round, so that load changes on a
    shared machine hit every case alike; stop after `runs` rounds, or once the budget of
    max_seconds per runner is spent (after 3 rounds). Returns run times (ms) per runner."""
    times = [[] for _ in runners]
    started = time.perf_counter()
    for done in range(1, runs + 1):
        for index, run in enumerate(runners):
            start = time.perf_counter()
            run()
            times[index].append((time.perf_counter() - start) * 1000.0)
            if on_run is not None:
                on_run()
        if done >= 3 and time.perf_counter() - started > max_seconds * len(runners):
            break
    return times


def run_bench(model_dirs, runtimes=None, cpu_threads=2, runs=20, warmup=3, max_seconds=8.0,
              image_path=None, progress=True):
    """Time every applicable case of every export; a JSON-ready dict with a recommendation.

    model_dirs: one export folder or a list (give the float and the QDQ export of a model
    to compare fp32 with INT8). runtimes: default every installed one. Cases are loaded
    first, then timed interleaved (see time_interleaved); a case that cannot run (an INT8
    run without INT8 kernels, a runtime error) becomes a row with its error.
    """
    from slimext.deploy.onnxruntime_runtime import import_onnxruntime, onnxruntime_version
    from slimext.deploy.openvino_runtime import import_openvino, openvino_version

    if isinstance(model_dirs, str):
        model_dirs = [model_dirs]
    runtimes = tuple(runtimes or available_runtimes())
    unknown = [r for r in runtimes if r not in FLOAT_PRECISIONS]
    if unknown:
        raise ValueError("runtime {!r} unknown; choose from {}".format(
            unknown[0], ", ".join(FLOAT_PRECISIONS)))
    if "openvino" in runtimes:
        import_openvino()   # a clear install hint now rather than one failed row per export
    if "onnxruntime" in runtimes:
        import_onnxruntime()
    plan = [(d, r, p) for d in model_dirs for r, p in applicable_cases(d, runtimes)]
    load_before = os.getloadavg()[0]
    bar = _progress_bar(len(plan) * (warmup + runs), progress)
    rows, runners = [], []
    try:
        for model_dir, runtime, precision in plan:
            bar.set_description("load " + CASES[(runtime, precision)][0])
            row, runner = _load_case(model_dir, runtime, precision,
                                     bench_image(model_dir, image_path), cpu_threads, warmup)
            bar.update(warmup)
            rows.append(row)
            if runner is not None:
                runners.append((row, runner))
        bar.set_description("timing")
        times = time_interleaved([runner for _, runner in runners], runs, max_seconds,
                                 on_run=lambda: bar.update(1))
    finally:
        bar.close()
    for (row, _), case_times in zip(runners, times):
        latency = latency_of(case_times)
        row.update(median_ms=latency.median_ms, p90_ms=latency.p90_ms, min_ms=latency.min_ms,
                   runs=latency.runs)
    machine = describe_machine()
    machine["openvino"] = openvino_version() if "openvino" in runtimes else None
    machine["onnxruntime"] = onnxruntime_version() if "onnxruntime" in runtimes else None
    result = {"machine": machine, "isa_line": isa_line(machine), "cpu_threads": cpu_threads,
              "runs": runs, "warmup": warmup, "load_average": load_before, "rows": rows}
    result["recommendation"] = recommendation(result)
    return result


def _progress_bar(total, enabled):
    from tqdm import tqdm

    # Only on a console: in a log file a redrawn bar is noise.
    return tqdm(total=total, disable=not (enabled and sys.stderr.isatty()), file=sys.stderr,
                unit="run", leave=False,
                bar_format="{desc:<20} {bar} {n_fmt}/{total_fmt} [{elapsed}]")


def _best(rows, kind):
    timed = [r for r in rows if r["kind"] == kind and "median_ms" in r]
    return min(timed, key=lambda r: r["median_ms"]) if timed else None


def recommendation(result):
    """One line that names what to ship and says why, from the measured rows."""
    rows, machine = result["rows"], result["machine"]
    best_fp32, best_int8 = _best(rows, "fp32"), _best(rows, "int8")
    hardware = machine.get("int8_hardware", "none")
    has_int8_hw = hardware in ("vnni", "amx")
    hw_text = ("this CPU has {} INT8 instructions".format(hardware.upper()) if has_int8_hw
               else "this CPU has no VNNI/AMX INT8 instructions")
    if best_fp32 is None and best_int8 is None:
        return "nothing ran: see the errors in the table"
    if best_int8 is None:
        return "ship {} ({:.1f} ms); no INT8 export measured ({}; {}): pass a QDQ export " \
               "too to compare".format(best_fp32["label"], best_fp32["median_ms"], hw_text,
                                       "INT8 may pay" if has_int8_hw else
                                       "INT8 is unlikely to pay")
    if best_fp32 is None:
        return "ship {} ({:.1f} ms); no float export measured: pass the float export too " \
               "to see whether INT8 pays ({})".format(best_int8["label"],
                                                       best_int8["median_ms"], hw_text)
    speedup = best_fp32["median_ms"] / best_int8["median_ms"]
    if speedup >= MIN_SPEEDUP:
        return "ship {} ({:.1f} ms): {:.2f}x faster than the best fp32, {} ({:.1f} ms); {}" \
               .format(best_int8["label"], best_int8["median_ms"], speedup, best_fp32["label"],
                       best_fp32["median_ms"], hw_text)
    reason = ("{}, but this model's INT8 program is not faster (see the INT8 kernel line "
              "and docs/benchmarks.md)".format(hw_text) if has_int8_hw else hw_text)
    return "INT8 gives no speed-up here ({:.2f}x, {}: {:.1f} ms vs {}: {:.1f} ms): {}; ship " \
           "{}".format(speedup, best_int8["label"], best_int8["median_ms"], best_fp32["label"],
                       best_fp32["median_ms"], reason, best_fp32["label"])


def _busy_note(result):
    cores = result["machine"].get("cores") or 1
    return (" (BUSY machine: absolute times are inflated; compare ratios)"
            if result["load_average"] > 0.5 * cores else "")


def format_table(result):
    """A markdown table of the rows, headed by the machine line."""
    versions = "".join(" | {} {}".format(label, result["machine"][key])
                       for key, label in (("openvino", "OpenVINO"),
                                          ("onnxruntime", "ONNX Runtime"))
                       if result["machine"].get(key))
    lines = ["machine: {}{}".format(result["isa_line"], versions),
        "{} threads, median/p90 of up to {} warm runs, interleaved; load average {:.1f} "
        "at start{}".format(result["cpu_threads"], result["runs"], result["load_average"],
                            _busy_note(result)), "",
        "| export | runtime / precision | median ms | p90 ms | runs | INT8 kernels |",
        "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        name = os.path.basename(os.path.normpath(row["model_dir"]))
        if "error" in row:
            lines.append("| {} | {} | failed | | | {} |".format(name, row["label"],
                                                                row["error"][:160]))
            continue
        kernels = row.get("int8_kernels")
        lines.append("| {} | {} | {:.1f} | {:.1f} | {} | {} |".format(
            name, row["label"], row["median_ms"], row["p90_ms"], row["runs"],
            "{} of {} convs".format(kernels["int8_convs"], kernels["convs"]) if kernels
            else "-"))
    return "\n".join(lines)
