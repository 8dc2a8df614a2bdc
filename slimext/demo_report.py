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


def runtime_advice(inference, machine, sizes=None):
    """Sentences: which runtime/precision is fastest here, why, and what to ship."""
    fp32, onednn, int8 = (inference.get(k) for k in ("float/fp32", "float/onednn",
                                                     "int8/onednn"))
    lines = []
    measured = {k: v for k, v in inference.items() if v.get("latency_ms")}
    if not measured:
        return lines
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
        lines += _int8_advice(onednn, int8, machine, sizes or {})
    return lines


def _int8_advice(onednn, int8, machine, sizes):
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
        return ["INT8 is {:.1f}x faster than oneDNN fp32 ({}): {}. Ship the INT8 model "
                "(`inference/int8/`, `--precision int8`).".format(speedup, accuracy, why)]
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
    return [verdict.format(pace, int8["latency_ms"], onednn["latency_ms"], accuracy, why),
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
    advice = runtime_advice(inference, machine, report.get("model_size_mb"))
    if advice:
        lines += ["## Which runtime to use on this machine", ""]
        lines += ["- " + sentence for sentence in advice]
        bench = report.get("bench")
        if bench:   # the same verdict as tools/deploy_bench.py on these two exports
            lines.append("- `tools/deploy_bench.py` on both exports: {}.".format(
                bench["recommendation"]))
        lines.append("")
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
