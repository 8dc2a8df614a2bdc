"""ResidualPTQ (four calibrators) vs ResidualQAT, and what sensitivity-guided precision buys.

    python -m benchmarks.ptq_sensitivity [--workdir bench_output/qat_compare] [--top_k 5]

Runs on the demo PicoDet float checkpoint that `python -m benchmarks.qat_compare` trained in
the same workdir (or --float_weights): post-training quantization with abs_max, KL, hist and
mse (fake-quant mAP and oneDNN INT8 predictor mAP/latency), then tools/quant_sensitivity.py,
then PTQ again with its top-k units kept at 16 bits (float on oneDNN). QAT numbers come from
the qat_compare results of the same workdir. Writes benchmarks/results/ptq_sensitivity.*.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import yaml

from benchmarks.qat_compare import (RESULTS_DIR, isolated_step, log, write_atomic,
                                     write_results)
from slimext import demo

ALGOS = ("abs_max", "KL", "hist", "mse")
PTQ_SLIM = "configs/slim/residual_ptq/picodet_demo_residual_ptq.yml"
QAT_SLIM = "configs/slim/residual_qat/picodet_demo_residual_qat.yml"
REPRODUCE = "python -m benchmarks.ptq_sensitivity"


def run_tool(workdir, name, args):
    """A tools/ script in its own process; returns its stdout, raises with the log's tail."""
    os.makedirs(os.path.join(workdir, "logs"), exist_ok=True)
    log_path = os.path.join(workdir, "logs", name + ".log")
    with open(log_path, "w") as f:
        result = subprocess.run([sys.executable] + args, cwd=demo.REPO_ROOT, stdout=subprocess.PIPE,
                                stderr=f, text=True)
        f.write(result.stdout)
    if result.returncode != 0:
        with open(log_path) as f:
            tail = f.read()[-1500:]
        raise RuntimeError("{} failed (log {}):\n{}".format(name, log_path, tail))
    return result.stdout


def post_quantize(context, name, slim, weights, algo):
    """PTQ with `algo` (pipeline.post_quantize, its own process), then the INT8 predictor."""
    from slimext import pipeline
    from slimext.deploy.benchmark import measure_predictor

    result = isolated_step(context.workdir, "ptq_" + name, pipeline.post_quantize,
                           context.config, weights, slim, context.path("ptq", name),
                           dict(context.dataset_overrides(), **{"ResidualPTQ.algo": algo}), True)
    if isinstance(result, dict):  # {"error": ...}
        raise RuntimeError("post-training quantization {} failed: {}".format(
            name, result["error"]))
    model_dir, metrics = result
    int8 = isolated_step(context.workdir, "infer_ptq_" + name, measure_predictor, model_dir,
                         "int8", context.dataset_dir, context.cpu_threads, context.latency_runs)
    return {"mAP": (metrics or {}).get("bbox", [None])[0], "int8": int8}


def sensitivity(context, weights, top_k):
    out = context.path("sensitivity")
    run_tool(context.workdir, "sensitivity",
             ["tools/quant_sensitivity.py", "-c", context.config, "--slim_config",
              os.path.join(demo.REPO_ROOT, QAT_SLIM), "--output_dir", out, "--top_k",
              str(top_k), "--keep", "16", "--num_batches", "2", "-o", "weights=" + weights]
             + ["{}={}".format(k, v) for k, v in context.dataset_overrides().items()])
    with open(os.path.join(out, "suggested_slim.yml")) as f:
        rules = yaml.safe_load(f)["ResidualQAT"]["rules"]
    with open(os.path.join(out, "sensitivity.json")) as f:
        report = json.load(f)
    return rules, report


def slim_with_rules(context, rules):
    """The demo PTQ config with the sensitivity rules, as a file in the workdir."""
    with open(os.path.join(demo.REPO_ROOT, PTQ_SLIM)) as f:
        data = yaml.safe_load(f)
    data["ResidualPTQ"]["rules"] = rules
    path = context.path("picodet_demo_residual_ptq_topk.yml")
    write_atomic(path, yaml.safe_dump(data, sort_keys=False))
    return path


def render_markdown(results):
    lines = ["# PTQ vs QAT and sensitivity-guided precision (demo PicoDet)", "",
             "Reproduce: `{}` ({}; float weights {}).".format(
                 results["command"], results["date"], results["float_weights"]), "",
             "| method | fake-quant mAP | INT8 predictor mAP | INT8 ms |", "|---|---|---|---|"]
    for name, row in results["rows"].items():
        int8 = row.get("int8") or {}
        lines.append("| {} | {} | {} | {} |".format(
            name, "-" if row.get("mAP") is None else "{:.3f}".format(row["mAP"]),
            "{:.3f}".format(int8["mAP"]) if "mAP" in int8 else int8.get("error", "-"),
            "{:.1f}".format(int8["latency_ms"]) if "latency_ms" in int8 else "-"))
    top = results.get("sensitivity_top", [])
    if top:
        lines += ["", "Top {} units by head-output SQNR when quantized alone (all units "
                  "quantized: {:.1f} dB), kept at 16 bits (float on oneDNN) in `ptq_{}_top{}`:"
                  .format(len(top), results["sensitivity_all_quant_db"], results["topk_algo"],
                          len(top)), ""]
        lines += ["- `{}`: {:.1f} dB".format(u["unit"], u["value"]) for u in top]
    return "\n".join(lines) + "\n"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="bench_output/qat_compare",
                        help="the qat_compare workdir (its demo float weights and results)")
    parser.add_argument("--float_weights", help="default: the float model qat_compare trained")
    parser.add_argument("--top_k", type=int, default=5)
    parser.add_argument("--latency_runs", type=int, default=50)
    parser.add_argument("--results_dir", default=RESULTS_DIR)
    return parser


def main(argv=None):
    flags = build_parser().parse_args(argv)
    workdir = os.path.abspath(flags.workdir)
    context = demo.DemoContext(workdir=os.path.join(workdir, "picodet"),
                               latency_runs=flags.latency_runs)
    weights = flags.float_weights or context.path("output", "picodet_xs_192_demo_lcnet",
                                                  "model_final")
    if not os.path.isfile(weights + ".pdparams"):
        build_parser().error("no float weights at {}.pdparams: run python -m "
                             "benchmarks.qat_compare first or pass --float_weights".format(weights))
    start = time.time()
    demo.make_dataset(context)
    slim = os.path.join(demo.REPO_ROOT, PTQ_SLIM)
    rows = {}
    for algo in ALGOS:
        log("ptq {}".format(algo))
        rows["ptq_" + algo] = post_quantize(context, algo, slim, weights, algo)
    best = max(ALGOS, key=lambda a: rows["ptq_" + a]["mAP"] or 0.0)
    log("sensitivity (top {})".format(flags.top_k))
    rules, report = sensitivity(context, weights, flags.top_k)
    topk_slim = slim_with_rules(context, rules)
    name = "{}_top{}".format(best, flags.top_k)
    rows["ptq_" + name] = post_quantize(context, name, topk_slim, weights, best)
    qat_json = os.path.join(flags.results_dir, "qat_compare.json")
    if os.path.isfile(qat_json):
        with open(qat_json) as f:
            qat = json.load(f).get("picodet", {}).get("rows", {})
        for key in ("float", "residual_qat"):
            if key in qat:
                rows[key + " (qat_compare)"] = {"mAP": qat[key]["mAP"],
                                               "int8": qat[key].get("int8")}
    results = {"command": " ".join([REPRODUCE] + (argv if argv is not None else sys.argv[1:])),
               "date": time.strftime("%Y-%m-%d"), "float_weights": os.path.relpath(weights),
               "rows": rows, "topk_algo": best,
               "top_units": [r["match"] for r in rules][-flags.top_k:],
               "sensitivity_all_quant_db": report["ranking"]["all_quant"],
               "sensitivity_top": report["ranking"]["units"][:flags.top_k],
               "seconds": round(time.time() - start)}
    write_results(flags.results_dir, "ptq_sensitivity", results, render_markdown(results))
    log("done in {} s".format(results["seconds"]))


if __name__ == "__main__":
    main()
