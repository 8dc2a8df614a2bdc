"""The same demo PicoDet measurements on each supported Paddle stack, in one run.

    python -m benchmarks.stack_compare --float_weights demo_output/output/picodet_xs_192_demo_lcnet/model_final
        [--stacks paddle33,paddle26] [--qat_epochs 1]

For every stack (stacks/*.txt, installed with `make install STACK=...` into .venv-STACK),
`benchmarks.qat_compare --only picodet` runs in that stack's Python from the same float
weights: QAT step time, fake-quant and INT8-predictor mAP, latency (plain fp32, oneDNN fp32,
oneDNN INT8). The stacks run one after the other on the same machine, so their ratios can be
compared; results go to benchmarks/results/stack_compare.{json,md}.
"""
import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks.qat_compare import RESULTS_DIR, write_results

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPRODUCE = "python -m benchmarks.stack_compare"


def stack_python(stack):
    python = os.path.join(REPO_ROOT, ".venv-" + stack, "bin", "python")
    if not os.path.isfile(python):
        raise SystemExit("Error: stack {} is not installed: run `make install STACK={}`"
                         .format(stack, stack))
    return python


def measure_stack(stack, flags):
    workdir = os.path.join(flags.workdir, stack)
    command = [stack_python(stack), "-m", "benchmarks.qat_compare", "--only", "picodet",
               "--float_weights", flags.float_weights, "--qat_epochs", str(flags.qat_epochs),
               "--workdir", workdir, "--results_dir", workdir, "--results_name", "result",
               "--latency_runs", str(flags.latency_runs)]
    print("[bench] {}: {}".format(stack, " ".join(command)), flush=True)
    subprocess.run(command, cwd=REPO_ROOT, check=True)
    with open(os.path.join(workdir, "result.json")) as f:
        return json.load(f)


def _ms(entry):
    return entry.get("latency_ms") if isinstance(entry, dict) else None


def stack_row(result):
    rows = result["picodet"]["rows"]
    float_row, qat = rows["float"], rows["residual_qat"]
    onednn, int8 = _ms(float_row.get("onednn")), _ms(qat.get("int8"))
    return {"paddle": result["machine"]["paddle"],
            "float_mAP": float_row.get("mAP"), "qat_mAP": qat.get("mAP"),
            "int8_mAP": (qat.get("int8") or {}).get("mAP"),
            "fp32_ms": _ms(float_row.get("fp32")), "onednn_fp32_ms": onednn, "int8_ms": int8,
            "int8_over_onednn": int8 / onednn if int8 and onednn else None,
            "qat_step_ms": qat.get("step_ms"),
            "paddleslim_qat_step_ms": rows.get("paddleslim_qat", {}).get("step_ms"),
            "paddleslim_int8": rows.get("paddleslim_qat", {}).get("int8")}


def _fmt(value, fmt):
    return fmt.format(value) if isinstance(value, (int, float)) else "-"


def render_markdown(results):
    from slimext.deploy.hardware import isa_line

    lines = ["# Paddle stacks side by side", "",
             "Reproduce: `{}` ({}). Demo PicoDet-XS 192, the same float weights on every "
             "stack, ResidualQAT {} epoch(s); latency: median, batch 1, 2 threads.".format(
                 results["command"], results["date"], results["qat_epochs"]), "",
             "Machine: {}".format(isa_line(results["machine"])), "",
             "| stack | Paddle | float mAP | QAT mAP | INT8 predictor mAP | fp32 ms | "
             "oneDNN fp32 ms | oneDNN INT8 ms | INT8 / oneDNN fp32 | QAT step ms |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for stack, row in results["stacks"].items():
        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            stack, row["paddle"], _fmt(row["float_mAP"], "{:.3f}"),
            _fmt(row["qat_mAP"], "{:.3f}"), _fmt(row["int8_mAP"], "{:.3f}"),
            _fmt(row["fp32_ms"], "{:.1f}"), _fmt(row["onednn_fp32_ms"], "{:.1f}"),
            _fmt(row["int8_ms"], "{:.1f}"), _fmt(row["int8_over_onednn"], "{:.2f}x"),
            _fmt(row["qat_step_ms"], "{:.0f}")))
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--float_weights", required=True,
                        help="a trained demo PicoDet checkpoint prefix (e.g. from make demo)")
    parser.add_argument("--stacks", default="paddle33,paddle26")
    parser.add_argument("--qat_epochs", type=int, default=1)
    parser.add_argument("--latency_runs", type=int, default=50)
    parser.add_argument("--workdir", default="bench_output/stack_compare")
    parser.add_argument("--results_dir", default=RESULTS_DIR)
    flags = parser.parse_args(argv)
    flags.workdir = os.path.abspath(flags.workdir)
    flags.float_weights = os.path.abspath(flags.float_weights)
    if not os.path.isfile(flags.float_weights + ".pdparams"):
        parser.error("--float_weights {}: no .pdparams file there".format(flags.float_weights))
    start = time.time()
    measured = {stack: measure_stack(stack, flags) for stack in flags.stacks.split(",")}
    first = next(iter(measured.values()))
    results = {"command": " ".join([REPRODUCE] + (argv if argv is not None else sys.argv[1:])),
               "date": time.strftime("%Y-%m-%d"),
               "machine": dict(first["machine"], paddle="per stack (table)"),
               "qat_epochs": flags.qat_epochs,
               "stacks": {stack: stack_row(r) for stack, r in measured.items()},
               "seconds": round(time.time() - start)}
    write_results(flags.results_dir, "stack_compare", results, render_markdown(results))


if __name__ == "__main__":
    main()
