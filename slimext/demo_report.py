"""The demo's report.json rendered as a short Markdown page."""


def _row(cells):
    return "| " + " | ".join(str(c) for c in cells) + " |"


def render_markdown(report):
    settings = report.get("settings", {})
    lines = ["# slimext demo report", "",
             "Config `{}`, {} epoch(s){}, {} CPU thread(s).".format(
                 settings.get("config"), settings.get("epochs"),
                 " (quick smoke run)" if settings.get("quick") else "",
                 settings.get("cpu_threads")), ""]
    dataset = report.get("dataset")
    if dataset:
        lines += ["Synthetic shapes set: {} train / {} val images (seed {}).".format(
            dataset["num_train"], dataset["num_val"], dataset["seed"]), ""]
    dygraph = [(label, report[key]) for key, label in
               (("dygraph", "float"), ("dygraph_qat", "ResidualQAT (fake-quant)"))
               if report.get(key)]
    if dygraph:
        lines += ["## Accuracy in dygraph (ppdet evaluation)", "",
                  _row(["model", "mAP@[.5:.95]", "mAP@.5"]), _row(["---"] * 3)]
        lines += [_row([label, "{:.3f}".format(r["mAP"]), "{:.3f}".format(r["mAP50"])])
                  for label, r in dygraph]
        lines.append("")
    inference = report.get("inference", {})
    if inference:
        lines += ["## Paddle Inference (exported model, CPU)", "",
                  _row(["model/precision", "mAP@[.5:.95]", "mAP@.5", "median latency",
                        "threads"]),
                  _row(["---"] * 5)]
        for label, r in inference.items():
            lines.append(_row([label, "{:.3f}".format(r["mAP"]), "{:.3f}".format(r["mAP50"]),
                               "{:.1f} ms ({} runs)".format(r["latency_ms"], r["latency_runs"]),
                               r["cpu_threads"]]))
        lines.append("")
    sizes = report.get("model_size_mb", {})
    if sizes:
        lines += ["## Exported model size", ""]
        lines += ["- {}: {:.2f} MB".format(name, size) for name, size in sizes.items()]
        lines.append("")
    if report.get("example_png"):
        lines += ["Example detections: `{}`".format(report["example_png"]), ""]
    seconds = report.get("stage_seconds", {})
    if seconds:
        lines += ["Stage times: " + ", ".join("{} {:.0f} s".format(k, v)
                                              for k, v in seconds.items()), ""]
    return "\n".join(lines)
