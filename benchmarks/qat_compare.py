"""Float vs PaddleSlim QAT vs ResidualQAT, in one run: demo PicoDet, PicoDet-S, ResNet-18.

    python -m benchmarks.qat_compare [--workdir bench_output/qat_compare] [--only picodet]

For each model: float training, then both QAT methods from the same float weights with
the same budget; accuracy of the fake-quant model and of its INT8 Paddle Inference
predictor; median latency (plain fp32, oneDNN fp32, oneDNN INT8, batch 1, 2 threads);
median training step time; model file sizes. PicoDet-S (no COCO here) is measured for
latency only. Every step runs in its own process. Prints
a markdown table, writes benchmarks/results/qat_compare.{json,md}.
"""
import argparse
import json
import os
import re
import statistics
import sys
import time

from slimext import demo
from slimext.isolation import StepFailed, run_in_fresh_process

RESULTS_DIR = os.path.join(demo.REPO_ROOT, "benchmarks", "results")
PICODET_METHODS = {
    "paddleslim_qat": "configs/slim/quant/picodet_demo_qat.yml",
    "residual_qat": "configs/slim/residual_qat/picodet_demo_residual_qat.yml",
}
REPRODUCE = "python -m benchmarks.qat_compare"
SECTIONS = ("picodet", "picodet_s", "resnet18")


def log(message):
    print("[bench] {}".format(message), flush=True)


def median_batch_cost_ms(log_path):
    """Median of ppdet's logged `batch_cost` (seconds per step), skipping the first line."""
    with open(log_path) as f:
        costs = [float(v) for v in re.findall(r"batch_cost: ([0-9.]+)", f.read())]
    costs = costs[1:] if len(costs) > 1 else costs
    return statistics.median(costs) * 1000.0 if costs else None


def failure_reason(log_path):
    """The most telling line of a failed step's log."""
    with open(log_path) as f:
        lines = [line.strip() for line in f if line.strip()]
    for pattern in ("Could not find", "Error", "error"):
        hits = [line for line in lines if pattern in line]
        if hits:
            return hits[-1][:300]
    return lines[-1][:300] if lines else "no output"


def _predictor_step(context, label, model_dir, precision):
    from slimext.deploy.benchmark import measure_predictor

    name = "infer_" + label
    try:
        return demo.run_step(context, name, measure_predictor, model_dir, precision,
                             context.dataset_dir, context.cpu_threads, context.latency_runs)
    except StepFailed:
        return {"error": failure_reason(context.path("logs", name + ".log"))}


def run_picodet(flags):
    context = demo.DemoContext(workdir=os.path.join(flags.workdir, "picodet"),
                               epochs=flags.epochs, qat_epochs=flags.qat_epochs,
                               latency_runs=flags.latency_runs)
    os.makedirs(context.workdir, exist_ok=True)
    demo.make_dataset(context)
    if flags.float_weights:
        context.artifacts["float_weights"] = os.path.abspath(flags.float_weights)
        float_step = None
    else:
        demo.train_float(context)
        float_step = median_batch_cost_ms(context.path("logs", "train.log"))
    demo.evaluate_float(context)
    demo.export_float(context)
    float_dir = context.artifacts["float_model_dir"]
    rows = {"float": {"mAP": context.results["dygraph"]["mAP"], "step_ms": float_step,
                      "size_mb": demo.model_size_mb(float_dir),
                      "fp32": _predictor_step(context, "float_fp32", float_dir, "fp32"),
                      "onednn": _predictor_step(context, "float_onednn", float_dir, "onednn")}}
    for method, slim in PICODET_METHODS.items():
        slim = os.path.join(demo.REPO_ROOT, slim)
        log("picodet: {}".format(method))
        weights = demo.train_slim(context, method, slim)
        row = {"mAP": demo.evaluate_slim(context, method, slim, weights)["mAP"],
               "step_ms": median_batch_cost_ms(context.path("logs",
                                                            "train_{}.log".format(method)))}
        try:
            model_dir = demo.export_slim(context, method, slim, weights)
            row["size_mb"] = demo.model_size_mb(model_dir)
            row["int8"] = _predictor_step(context, method + "_int8", model_dir, "int8")
        except StepFailed:
            row["int8"] = {"error": "export failed: " + failure_reason(
                context.path("logs", "export_{}.log".format(method)))}
        rows[method] = row
        log("picodet {}: {}".format(method, row))
    return {"model": "demo PicoDet-XS LCNet 192 (3 classes)", "epochs": flags.epochs,
            "qat_epochs": flags.qat_epochs, "rows": rows}


def isolated_step(workdir, name, func, *args):
    """func(*args) in a fresh process, logged to workdir/logs/name.log; {"error"} on failure."""
    os.makedirs(os.path.join(workdir, "logs"), exist_ok=True)
    log_path = os.path.join(workdir, "logs", name + ".log")
    try:
        return run_in_fresh_process(func, *args, log_path=log_path)
    except StepFailed:
        return {"error": failure_reason(log_path)}


def run_picodet_s(flags):
    """Latency only (random weights, calibrated scales): see benchmarks/picodet_s_latency.py."""
    from benchmarks import picodet_s_latency as pico_s
    from slimext import pipeline

    workdir = os.path.join(flags.workdir, "picodet_s")
    config = os.path.join(demo.REPO_ROOT, pico_s.CONFIG)
    image_dir = os.path.join(flags.workdir, "picodet", "dataset", "demo", "val")
    image = os.path.join(image_dir, "val_00000.png")

    def step(name, func, *args):
        return isolated_step(workdir, name, func, *args)

    def latency(name, model_dir, precision):
        return step("infer_" + name, pico_s.measure_latency_only, model_dir, precision, image,
                    2, flags.latency_runs)

    log("picodet-s: float export and latency")
    weights = step("weights", pico_s.save_random_weights, workdir, config, image_dir)
    float_dir = step("export_float", pipeline.export, config, weights,
                     os.path.join(workdir, "float"), None, pico_s.EXPORT_OVERRIDES)
    if isinstance(float_dir, dict):
        raise StepFailed("PicoDet-S float export failed: {}".format(float_dir["error"]))
    rows = {"float": {"size_mb": demo.model_size_mb(float_dir),
                      "fp32": latency("float_fp32", float_dir, "fp32"),
                      "onednn": latency("float_onednn", float_dir, "onednn")}}
    for method, slim in pico_s.METHODS.items():
        log("picodet-s: {}".format(method))
        slim = os.path.join(demo.REPO_ROOT, slim)
        row = {}
        calibrated = step("calibrate_" + method, pico_s.calibrate_quantized_weights, workdir,
                          config, slim, weights, float_dir, image_dir)
        model_dir = None
        if "error" not in calibrated:
            model_dir = step("export_" + method, pipeline.export, config,
                             calibrated["weights"], os.path.join(workdir, method), slim,
                             pico_s.EXPORT_OVERRIDES)
        if isinstance(model_dir, str):
            row["size_mb"] = demo.model_size_mb(model_dir)
            row["int8"] = latency(method + "_int8", model_dir, "int8")
        else:
            failed = model_dir if isinstance(model_dir, dict) else calibrated
            row["int8"] = {"error": "export failed: " + failed["error"]}
        rows[method] = row
        log("picodet-s {}: {}".format(method, row))
    return {"model": "PicoDet-S LCNet 416 (COCO config, random weights: latency only, "
                     "without box decoding and NMS)",
            "rows": rows}


def run_resnet(flags):
    from benchmarks import resnet18_qat as resnet

    workdir = os.path.join(flags.workdir, "resnet18")

    def step(name, func, *args):
        return isolated_step(workdir, name, func, *args)

    log("resnet18: float training ({} epochs)".format(flags.resnet_epochs))
    sizes = {"train": flags.resnet_train, "val": flags.resnet_val}
    rows = {"float": step("train_float", resnet.train_float, workdir, flags.resnet_epochs,
                          flags.seed, sizes)}
    if "error" in rows["float"]:
        raise StepFailed("resnet18 float training failed: {}".format(rows["float"]["error"]))
    for precision in ("fp32", "onednn"):
        rows["float"][precision] = step("infer_float_" + precision, resnet.measure_predictor,
                                        rows["float"]["model_dir"], precision, flags.seed,
                                        2, flags.latency_runs, sizes)
    for method in resnet.METHODS:
        log("resnet18: {}".format(method))
        row = step("train_" + method, resnet.train_qat, workdir, method,
                   flags.qat_epochs_resnet, flags.seed, sizes)
        if "error" not in row:
            row["int8"] = step("infer_{}_int8".format(method), resnet.measure_predictor,
                               row["model_dir"], "int8", flags.seed, 2, flags.latency_runs,
                               sizes)
        rows[method] = row
        log("resnet18 {}: {}".format(method, row))
    return {"model": "paddle.vision resnet18, 10 classes, 224x224 ({} train / {} val images)"
            .format(flags.resnet_train, flags.resnet_val), "epochs": flags.resnet_epochs,
            "qat_epochs": flags.qat_epochs_resnet, "rows": rows}


# --- report ---------------------------------------------------------------------------------

def _num(value, fmt="{:.3f}"):
    return "-" if value is None else fmt.format(value)


def _latency(entry):
    if not entry:
        return "-"
    if "error" in entry:
        return "fails"
    return "{:.1f}".format(entry["latency_ms"])


def _predictor_metric(entry, key):
    if not entry or "error" in entry or key not in entry:
        return "-"
    return "{:.3f}".format(entry[key])


def targets(results):
    """The issue's targets as (name, measured, goal, met) rows; None where unmeasurable."""
    checks = []
    pico = results.get("picodet", {}).get("rows")
    if pico:
        best_fp32 = min(pico["float"]["fp32"].get("latency_ms", 1e9),
                        pico["float"]["onednn"].get("latency_ms", 1e9))
        ours = pico["residual_qat"]
        int8 = ours.get("int8", {})
        if "latency_ms" in int8:
            ratio = int8["latency_ms"] / best_fp32
            checks.append(("demo PicoDet INT8 latency / best fp32", ratio, "<= 0.60",
                           ratio <= 0.6))
            gap = abs(int8["mAP"] - ours["mAP"]) * 100
            checks.append(("PicoDet INT8 mAP vs fake-quant (points)", gap, "<= 0.5", gap <= 0.5))
        drop = (pico["float"]["mAP"] - ours["mAP"]) * 100
        checks.append(("PicoDet QAT mAP drop vs float (points)", drop, "<= 0.3", drop <= 0.3))
        diff = (ours["mAP"] - pico["paddleslim_qat"]["mAP"]) * 100
        checks.append(("PicoDet ResidualQAT - PaddleSlim QAT mAP (points)", diff, ">= 0",
                       diff >= 0))
        if ours.get("step_ms") and pico["paddleslim_qat"].get("step_ms"):
            ratio = ours["step_ms"] / pico["paddleslim_qat"]["step_ms"]
            checks.append(("PicoDet QAT step time ratio", ratio, "<= 1.10", ratio <= 1.10))
    pico_s = results.get("picodet_s", {}).get("rows")
    if pico_s and "latency_ms" in pico_s["residual_qat"].get("int8", {}):
        best_fp32 = min(pico_s["float"]["fp32"].get("latency_ms", 1e9),
                        pico_s["float"]["onednn"].get("latency_ms", 1e9))
        ratio = pico_s["residual_qat"]["int8"]["latency_ms"] / best_fp32
        checks.append(("PicoDet-S 416 INT8 latency / best fp32", ratio, "<= 0.60",
                       ratio <= 0.6))
    res = results.get("resnet18", {}).get("rows")
    if res:
        ours, stock = res["residual_qat"], res["paddleslim_qat"]
        if "latency_ms" in ours.get("int8", {}) and "latency_ms" in stock.get("int8", {}):
            ratio = ours["int8"]["latency_ms"] / stock["int8"]["latency_ms"]
            checks.append(("ResNet-18 INT8 latency ResidualQAT / PaddleSlim QAT", ratio,
                           "<= 0.75", ratio <= 0.75))
        if ours.get("step_ms") and stock.get("step_ms"):
            ratio = ours["step_ms"] / stock["step_ms"]
            checks.append(("ResNet-18 QAT step time ratio", ratio, "<= 1.10", ratio <= 1.10))
    return checks


def render_markdown(results):
    lines = ["# QAT comparison", "",
             "Reproduce: `{}` ({}; 2 CPU threads for inference; each section names the "
             "run that measured it).".format(REPRODUCE, results["date"]), ""]
    if results.get("machine"):
        from slimext.deploy.hardware import isa_line

        lines += ["Machine: {}".format(isa_line(results["machine"])), ""]
    for key, metric in (("picodet", "mAP"), ("picodet_s", "mAP"), ("resnet18", "accuracy")):
        section = results.get(key)
        if not section:
            continue
        budget = ("Float {} epochs; each QAT {} epochs from the same float weights.".format(
            section["epochs"], section["qat_epochs"]) if "epochs" in section else
            "Random weights, scales calibrated on 8 demo images: latency only.")
        command = results.get("section_commands", {}).get(key, results["command"])
        budget += " Measured by `{}`.".format(command)
        lines += ["## {}".format(section["model"]), "", budget, "",
                  "| model | {m} (dygraph) | {m} (INT8 predictor) | fp32 ms | oneDNN fp32 ms "
                  "| oneDNN INT8 ms | train step ms | size MB |".format(m=metric),
                  "|---|---|---|---|---|---|---|---|"]
        for name, row in section["rows"].items():
            lines.append("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
                name, _num(row.get(metric)), _predictor_metric(row.get("int8"), metric),
                _latency(row.get("fp32")), _latency(row.get("onednn")),
                _latency(row.get("int8")), _num(row.get("step_ms"), "{:.0f}"),
                _num(row.get("size_mb"), "{:.2f}")))
        errors = ["- {} INT8: {}".format(name, row["int8"]["error"])
                  for name, row in section["rows"].items()
                  if isinstance(row.get("int8"), dict) and "error" in row["int8"]]
        if errors:
            lines += ["", "Failures:"] + errors
        lines.append("")
    lines += ["## Targets", "", "| target | measured | goal | met |", "|---|---|---|---|"]
    for name, value, goal, met in targets(results):
        lines.append("| {} | {:.2f} | {} | {} |".format(name, value, goal,
                                                          "yes" if met else "no"))
    return "\n".join(lines) + "\n"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="bench_output/qat_compare")
    parser.add_argument("--only", choices=SECTIONS,
                        help="measure one section, keep the others of the results file")
    parser.add_argument("--epochs", type=int, default=16, help="PicoDet float epochs")
    parser.add_argument("--qat_epochs", type=int, default=3, help="PicoDet QAT epochs")
    parser.add_argument("--float_weights", help="reuse a trained demo PicoDet checkpoint")
    parser.add_argument("--resnet_epochs", type=int, default=4)
    parser.add_argument("--qat_epochs_resnet", type=int, default=1)
    parser.add_argument("--resnet_train", type=int, default=500, help="ResNet-18 train images")
    parser.add_argument("--resnet_val", type=int, default=200, help="ResNet-18 val images")
    parser.add_argument("--latency_runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results_dir", default=RESULTS_DIR)
    parser.add_argument("--results_name", default="qat_compare",
                        help="file name (no extension) of the result JSON/markdown")
    return parser


def write_atomic(path, text):
    from slimext.fileio import atomic_write_text

    atomic_write_text(path, text)


def timing_parser(doc, workdir, runs, max_seconds):
    """The flags every latency benchmark takes: where to build, where results go, how long."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--workdir", default=workdir)
    parser.add_argument("--results_dir", default=RESULTS_DIR)
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--max_seconds", type=float, default=max_seconds)
    return parser


def built_or_exit(build, workdir, what):
    """build(absolute workdir), or exit with one line naming the step that failed."""
    try:
        return build(os.path.abspath(workdir))
    except StepFailed as error:
        raise SystemExit("building the {} failed: {}".format(what, error))


def write_results(results_dir, name, results, markdown):
    """results_dir/name.json and name.md, each swapped in complete; prints the table."""
    os.makedirs(results_dir, exist_ok=True)
    write_atomic(os.path.join(results_dir, name + ".json"), json.dumps(results, indent=2))
    write_atomic(os.path.join(results_dir, name + ".md"), markdown)
    print(markdown)


def main(argv=None):
    import slimext

    slimext.register_with_ppdet()  # slimext's slim classes and compat fixes
    flags = build_parser().parse_args(argv)
    flags.workdir = os.path.abspath(flags.workdir)
    if flags.float_weights and not os.path.isfile(flags.float_weights + ".pdparams"):
        build_parser().error("--float_weights {}: no {}.pdparams".format(
            flags.float_weights, flags.float_weights))
    start = time.time()
    from slimext.deploy.hardware import describe_machine

    results = {"command": " ".join([REPRODUCE] + (argv if argv is not None else sys.argv[1:])),
               "date": time.strftime("%Y-%m-%d"), "machine": describe_machine()}
    previous = os.path.join(flags.results_dir, flags.results_name + ".json")
    if flags.only and os.path.isfile(previous):
        # Re-measuring one section keeps the others; each section is still one run.
        with open(previous) as f:
            kept = json.load(f)
        results.update({k: kept[k] for k in SECTIONS if k in kept and k != flags.only})
        results["section_commands"] = dict(kept.get("section_commands", {}))
    for key in SECTIONS:
        if flags.only in (None, key):
            results.setdefault("section_commands", {})[key] = results["command"]
    try:
        if flags.only in (None, "picodet"):
            results["picodet"] = run_picodet(flags)
        if flags.only in (None, "picodet_s"):
            if not os.path.isdir(os.path.join(flags.workdir, "picodet", "dataset", "demo")):
                demo.make_dataset(demo.DemoContext(workdir=os.path.join(flags.workdir,
                                                                        "picodet")))
            results["picodet_s"] = run_picodet_s(flags)
        if flags.only in (None, "resnet18"):
            results["resnet18"] = run_resnet(flags)
    except StepFailed as error:
        print("Error: benchmark step failed: {}".format(error), file=sys.stderr)
        sys.exit(1)
    results["seconds"] = round(time.time() - start)
    results["targets"] = [dict(zip(("target", "measured", "goal", "met"), t))
                          for t in targets(results)]
    write_results(flags.results_dir, flags.results_name, results, render_markdown(results))
    log("done in {:.0f} s; results in {}".format(results["seconds"], flags.results_dir))


if __name__ == "__main__":
    main()
