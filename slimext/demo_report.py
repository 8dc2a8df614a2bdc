"""The demo's report.json rendered as a Markdown page that reads well in any viewer.

Pictures are linked relative to the report (they sit beside it in the demo's workdir), and
the runtime section says which precision is fastest on the machine that ran it, and why.
"""
from slimext.deploy.runtime_choice import MIN_SPEEDUP
from slimext.deploy.hardware import isa_line

# Below this relative difference two latencies count as equal (run-to-run noise on a
# shared CPU is a few percent).
SAME_SPEED = 0.05

ISA_NAMES = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX-512 VNNI",
             "avx_vnni": "AVX-VNNI", "amx_int8": "AMX-INT8"}


def _row(cells):
    return "| " + " | ".join(str(c) for c in cells) + " |"


def int8_hardware_words(machine):
    """'AVX-512 VNNI', 'AMX-INT8 and AVX-512 VNNI', ... : the INT8 instructions present."""
    isa = set(machine.get("isa", ()))
    present = [ISA_NAMES[f] for f in ("amx_int8", "avx512_vnni", "avx_vnni") if f in isa]
    return " and ".join(present)


def vector_words(machine):
    isa = set(machine.get("isa", ()))
    present = [ISA_NAMES[f] for f in ("avx512f", "avx2") if f in isa]
    return present[0] if present else "no AVX2"


def runtime_advice(inference, machine, sizes=None, bench_rows=None):
    """Sentences: which runtime/precision is fastest here, why, and what to ship.
    bench_rows (the interleaved run of every runtime) decide the fastest when given."""
    fp32, onednn, int8 = (inference.get(k) for k in ("float/fp32", "float/onednn",
                                                     "int8/onednn"))
    lines = []
    measured = {k: v for k, v in inference.items() if v.get("latency_ms")}
    if not measured:
        return lines
    timed = [r for r in bench_rows or () if "median_ms" in r]
    if timed:
        fastest = min(timed, key=lambda r: r["median_ms"])
        best_fp32 = min((r["median_ms"] for r in timed if r["kind"] == "fp32"), default=None)
        too_close = fastest["kind"] == "int8" and best_fp32 is not None and \
            best_fp32 / fastest["median_ms"] < MIN_SPEEDUP
        lines.append("Fastest here: **{}** on the {} export at {:.1f} ms per image, of "
                     "every runtime timed below{}.".format(
                         fastest["label"], "INT8" if fastest["kind"] == "int8" else "float",
                         fastest["median_ms"],
                         " (only {:.2f}x the best fp32: INT8 has to be {:.1f}x faster to be "
                         "worth its accuracy risk, so what to ship below is fp32)".format(
                             best_fp32 / fastest["median_ms"], MIN_SPEEDUP)
                         if too_close else ""))
    else:
        fastest = min(measured, key=lambda k: measured[k]["latency_ms"])
        lines.append("Fastest here: **{}** at {:.1f} ms per image.".format(
            fastest, measured[fastest]["latency_ms"]))
    if fp32 and onednn:
        ratio = fp32["latency_ms"] / onednn["latency_ms"]
        if ratio >= 1 + SAME_SPEED:
            lines.append("oneDNN fp32 is {:.1f}x faster than plain fp32: its kernels use "
                         "this CPU's {} and fuse convolution, batch norm and activation."
                         .format(ratio, vector_words(machine)))
        elif ratio <= 1 - SAME_SPEED:
            lines.append("Plain fp32 is {:.1f}x faster than oneDNN fp32 on this model: "
                         "oneDNN's layout reorders cost more than its kernels save."
                         .format(1 / ratio))
        else:
            lines.append("Plain fp32 and oneDNN fp32 are equally fast here.")
    if onednn and int8:
        # With every runtime timed, what to ship is the interleaved run's verdict.
        lines += _int8_advice(onednn, int8, machine, sizes or {}, ship=not timed)
    return lines


def _int8_advice(onednn, int8, machine, sizes, ship=True):
    speedup = onednn["latency_ms"] / int8["latency_ms"]
    hardware = int8_hardware_words(machine)
    accuracy = "mAP {:.3f} vs {:.3f} float".format(int8["mAP"], onednn["mAP"])
    if hardware:
        why = "this CPU has {}, the instructions oneDNN's INT8 kernels are built on".format(
            hardware)
    else:
        why = ("this CPU has no VNNI or AMX ({} only), so oneDNN's INT8 kernels have no "
               "INT8 dot-product instruction and still pay for quantize/dequantize steps"
               .format(vector_words(machine)))
    if speedup >= MIN_SPEEDUP:
        faster = "INT8 is {:.1f}x faster than oneDNN fp32 ({}): {}.".format(speedup, accuracy,
                                                                          why)
        return [faster + (" Ship the INT8 model (`inference/int8/`, `--precision int8`)."
                          if ship else "")]
    if hardware:
        verdict = ("INT8 is {} oneDNN fp32 ({:.1f} vs {:.1f} ms, {}) although {}: on a "
                   "model this small, quantize/dequantize steps and the float post-processing "
                   "outweigh the faster convolutions.")
    else:
        verdict = "INT8 is {} oneDNN fp32 ({:.1f} vs {:.1f} ms, {}): {}."
    if speedup >= 1 + SAME_SPEED:
        pace = "only {:.2f}x faster than".format(speedup)
    else:
        pace = "as fast as" if speedup > 1 - SAME_SPEED else "slower than"
    smaller = ""
    if sizes.get("float") and sizes.get("int8"):
        smaller = " (and where a file {:.0%} of the float one matters)".format(
            sizes["int8"] / sizes["float"])
    verdict = verdict.format(pace, int8["latency_ms"], onednn["latency_ms"], accuracy, why)
    if not ship:
        return [verdict]
    return [verdict,
            "Ship the float model with oneDNN fp32 (`--precision onednn`) on this machine "
            "(INT8 has to be {:.1f}x faster to be worth its accuracy risk); the INT8 model is "
            "for CPUs with AVX-512 VNNI, AVX-VNNI or AMX{}.".format(MIN_SPEEDUP, smaller)]


def render_markdown(report):
    settings = report.get("settings", {})
    machine = report.get("machine") or {}
    lines = ["# slimext demo report", "",
             "Config `{}`, {} epoch(s){}, {} CPU thread(s).".format(
                 settings.get("config"), settings.get("epochs"),
                 " (quick smoke run)" if settings.get("quick") else "",
                 settings.get("cpu_threads"))]
    if machine.get("cpu"):
        lines += ["", "Machine: {}.".format(isa_line(machine))]
    lines.append("")
    dataset = report.get("dataset")
    if dataset:
        lines += ["Synthetic shapes set: {} train / {} val images (seed {}).".format(
            dataset["num_train"], dataset["num_val"], dataset["seed"]), ""]
    lines += _pictures(report.get("pictures"))
    inference = report.get("inference", {})
    advice = runtime_advice(inference, machine, report.get("model_size_mb"),
                            report.get("bench", {}).get("rows"))
    if advice:
        lines += ["## Which runtime to use on this machine", ""]
        lines += ["- " + sentence for sentence in advice]
        bench = report.get("bench")
        if bench:   # the same verdict as tools/deploy_bench.py on these two exports
            lines.append("- What to ship, from one interleaved run of every installed runtime "
                         "(`tools/deploy_bench.py` on both exports: the table below): {}."
                         .format(bench["recommendation"]))
        real_size = report.get("real_size")
        ratio = best_ratio(real_size["rows"]) if real_size else None
        if ratio is not None:
            lines.append("- At a real size ({}, below) the best INT8 takes {:.2f}x the best "
                         "fp32's time on this CPU: {}.".format(
                             real_size["model"], ratio, "INT8 pays there" if
                             ratio <= 1 / MIN_SPEEDUP else "INT8 does not pay here either"))
        lines.append("")
    if report.get("bench", {}).get("rows"):
        lines += ["## Every runtime, side by side (demo model)", ""]
        lines += runtime_table(report["bench"]) + [""]
    if report.get("real_size"):
        lines += real_size_section(report["real_size"])
    dygraph = [(label, report[key]) for key, label in
               (("dygraph", "float"), ("dygraph_qat", "ResidualQAT (fake-quant)"))
               if report.get(key)]
    if dygraph:
        lines += ["## Accuracy in dygraph (ppdet evaluation)", "",
                  _row(["model", "mAP@[.5:.95]", "mAP@.5"]), _row(["---"] * 3)]
        lines += [_row([label, "{:.3f}".format(r["mAP"]), "{:.3f}".format(r["mAP50"])])
                  for label, r in dygraph]
        lines.append("")
    if inference:
        lines += ["## Paddle Inference (exported model, CPU)", "",
                  _row(["model/precision", "mAP@[.5:.95]", "mAP@.5", "median latency",
                        "threads"]),
                  _row(["---"] * 5)]
        for label, r in inference.items():
            lines.append(_row([label, "{:.3f}".format(r["mAP"]), "{:.3f}".format(r["mAP50"]),
                               "{:.1f} ms ({} runs{})".format(
                                   r["latency_ms"], r["latency_runs"],
                                   ", interleaved" if r.get("interleaved") else ""),
                               r["cpu_threads"]]))
        lines.append("")
        # The INT8 run's proof that INT8 kernels executed (a fp32 fallback is an error).
        lines += ["{}: {}".format(label, r["int8_kernels"]) for label, r in inference.items()
                  if r.get("int8_kernels")]
        lines.append("")
    sizes = report.get("model_size_mb", {})
    if sizes:
        lines += ["## Exported model size", ""]
        lines += ["- {}: {:.2f} MB".format(name, size) for name, size in sizes.items()]
        lines.append("")
    seconds = report.get("stage_seconds", {})
    if seconds:
        lines += ["Stage times: " + ", ".join("{} {:.0f} s".format(k, v)
                                              for k, v in seconds.items()), ""]
    return "\n".join(lines)


def best_ratio(rows):
    """Best INT8 median / best fp32 median over the timed rows, or None."""
    best = {}
    for row in rows:
        if "median_ms" in row:
            kind = row["kind"]
            best[kind] = min(best.get(kind, row["median_ms"]), row["median_ms"])
    if "int8" in best and "fp32" in best:
        return best["int8"] / best["fp32"]
    return None


def runtime_table(bench):
    """Every runtime/precision of one interleaved run: median, p90, ratio to the best fp32,
    and what ran INT8 (a row that could not run says why)."""
    rows = bench["rows"]
    timed_fp32 = [r["median_ms"] for r in rows if r["kind"] == "fp32" and "median_ms" in r]
    best_fp32 = min(timed_fp32) if timed_fp32 else None
    lines = ["Machine: {}; load average {:.1f} at start. One interleaved run (one inference "
             "of each case per round), so the ratios compare; absolute times move with the "
             "machine's load.".format(bench["isa_line"], bench["load_average"]), "",
             _row(["model", "runtime / precision", "median", "p90", "vs best fp32",
                   "INT8 kernels"]), _row(["---"] * 6)]
    for row in rows:
        model = "INT8 QDQ" if row["kind"] == "int8" else "float"
        if "median_ms" not in row:
            lines.append(_row([model, row["label"], "failed", "", "",
                               row.get("error", "")[:160]]))
            continue
        kernels = row.get("int8_kernels")
        lines.append(_row([
            model, row["label"], "{:.1f} ms".format(row["median_ms"]),
            "{:.1f} ms".format(row["p90_ms"]),
            "{:.2f}x".format(row["median_ms"] / best_fp32) if best_fp32 else "",
            "{} of {} convs".format(kernels["int8_convs"], kernels["convs"]) if kernels
            else "-"]))
    return lines + ["", "Verdict: " + bench["recommendation"] + "."]


def real_size_section(real_size):
    ratio = best_ratio(real_size["rows"])
    lines = ["## At a real size: {}".format(real_size["model"]), "",
             "The demo model is too small for INT8 to show what it buys: fixed costs "
             "(quantize/dequantize steps, post-processing) weigh as much as its convolutions. "
             "This is PicoDet-S at its COCO input size, timed the same way: random weights "
             "with quantizer scales calibrated on {} demo images, no box decoding or NMS "
             "(latency only; its detections mean nothing).".format(
                 real_size["calibration_images"]), ""]
    if ratio is not None:
        lines += ["Best INT8 / best fp32 here: **{:.2f}**.".format(ratio), ""]
    return lines + runtime_table(real_size) + [""]


def _pictures(pictures):
    """The picture grid and the bar chart, linked relative to report.md."""
    if not pictures:
        return []
    lines = ["## Detections on validation images", "",
             "![ground truth and detections on the first val images]({})".format(
                 pictures["grid"]), "",
             "Each row is one of the first {} val images (not picked by hand). Columns: {}. "
             "A box is drawn for every detection with score >= {} and labelled with its "
             "class and score; ground truth is white.".format(
                 len(pictures.get("boxes_drawn", [])),
                 " | ".join(pictures.get("columns", [])), pictures["threshold"]), ""]
    if pictures.get("chart"):
        lines += ["![mAP and latency per model variant]({})".format(pictures["chart"]), ""]
    return lines
