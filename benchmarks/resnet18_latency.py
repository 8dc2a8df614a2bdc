"""ResNet-18 224 INT8 latency: ResidualQAT vs PaddleSlim QAT vs oneDNN fp32, one run.

Latency does not depend on what the weights learned, so this trains only briefly (the
steps of benchmarks/resnet18_qat.py on a small split, each in a fresh process), exports the
float model and both QAT models, then times Paddle Inference oneDNN fp32 and the two oneDNN
INT8 programs interleaved (one run of each per round: machine load hits all alike) and
counts, from each INT8 pass log, the residual adds fused into INT8 convolutions. OpenVINO
(reading the Paddle program) and ONNX Runtime (on slimext's ONNX conversion) run the float
and the ResidualQAT export in the same interleaved rounds when they are installed. Writes
benchmarks/results/resnet18_latency.{json,md}. Accuracy lives in benchmarks/qat_compare.py.

    python -m benchmarks.resnet18_latency [--workdir bench_output/resnet18_latency] [--runs 60]
"""
import json
import os
import re

import numpy as np

from slimext.isolation import run_in_fresh_process
from slimext.fileio import atomic_write_json

SIZES = {"train": 64, "val": 16}
CASES = (("float", "onednn", "float, oneDNN fp32"),
         ("paddleslim_qat", "int8", "PaddleSlim QAT, oneDNN INT8"),
         ("residual_qat", "int8", "ResidualQAT, oneDNN INT8"))


def build_models(workdir, seed=0):
    """{method: model_dir}, reused from an earlier run of the same workdir."""
    from benchmarks import resnet18_qat as resnet

    built = os.path.join(workdir, "models.json")
    if os.path.isfile(built):
        with open(built) as f:
            return json.load(f)
    dirs = {"float": run_in_fresh_process(resnet.train_float, workdir, 1, seed,
                                          SIZES)["model_dir"]}
    for method in resnet.METHODS:
        dirs[method] = run_in_fresh_process(resnet.train_qat, workdir, method, 1, seed,
                                            SIZES)["model_dir"]
    atomic_write_json(built, dirs, indent=1)
    return dirs


def _fused_residual_convs(pass_log):
    counts = re.findall(r"quantized (\d+) (?:fused_)?conv2d ops with residual", pass_log)
    return sum(int(c) for c in counts)


# (method, runtime, precision, label) timed beside Paddle's when the runtime is installed.
OTHER_RUNTIME_CASES = (("float", "openvino", "fp32", "float, OpenVINO fp32"),
                       ("residual_qat", "openvino", "int8", "ResidualQAT, OpenVINO INT8"),
                       ("float", "onnxruntime", "fp32", "float, ONNX Runtime fp32"),
                       ("residual_qat", "onnxruntime", "int8", "ResidualQAT, ONNX Runtime INT8"))


def _openvino_runner(model_dir, x, cpu_threads):
    from slimext.deploy.openvino_runtime import import_openvino

    core = import_openvino().Core()
    compiled = core.compile_model(core.read_model(os.path.join(model_dir, "model.pdmodel")),
                                  "CPU", {"INFERENCE_NUM_THREADS": cpu_threads,
                                          "INFERENCE_PRECISION_HINT": "f32",
                                          "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    return lambda: request.infer([x])


def _onnxruntime_runner(model_dir, precision, x, cpu_threads):
    from slimext.deploy.onnxruntime_runtime import import_onnxruntime
    from slimext.onnx import convert_export
    from slimext.onnx.integer_convs import lower_float_output_convs

    ort = import_onnxruntime()
    model = convert_export(model_dir, fold_into_convs=True)   # as the ORT runtime builds it
    if precision == "int8":
        lower_float_output_convs(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = cpu_threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")   # as the runtime
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: x})


def other_runtime_cases(dirs, x, cpu_threads):
    """(row, runner) for every installed runtime besides Paddle's."""
    from slimext.deploy.onnxruntime_runtime import onnxruntime_version
    from slimext.deploy.openvino_runtime import openvino_version

    installed = {"openvino": openvino_version(), "onnxruntime": onnxruntime_version()}
    cases = []
    for method, runtime, precision, label in OTHER_RUNTIME_CASES:
        if not installed[runtime]:
            continue
        runner = _openvino_runner(dirs[method], x, cpu_threads) if runtime == "openvino" \
            else _onnxruntime_runner(dirs[method], precision, x, cpu_threads)
        for _ in range(5):
            runner()
        cases.append(({"case": label, "method": method, "precision": precision,
                       "runtime": runtime, "fused_residual_convs": None}, runner))
    return cases


def time_cases(dirs, runs, max_seconds, cpu_threads=2):
    """Rows of median/p90 ms per case, timed round-robin in this process."""
    from paddle import inference

    from slimext.deploy.runtime_choice import time_interleaved
    from slimext.deploy.native_log import capture_native_stderr
    from slimext.deploy.predictor import create_config

    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype("float32")
    runners, rows = [], []
    for method, precision, label in CASES:
        config = create_config(dirs[method], precision, cpu_threads)
        with capture_native_stderr(echo=False) as log:
            predictor = inference.create_predictor(config)
        handle = predictor.get_input_handle(predictor.get_input_names()[0])
        handle.reshape(x.shape)
        handle.copy_from_cpu(x)
        for _ in range(5):
            predictor.run()
        runners.append(predictor.run)
        rows.append({"case": label, "method": method, "precision": precision,
                     "fused_residual_convs": _fused_residual_convs(log.text)
                     if precision == "int8" else None})
    for row, runner in other_runtime_cases(dirs, x, cpu_threads):
        rows.append(row)
        runners.append(runner)
    for row, times in zip(rows, time_interleaved(runners, runs, max_seconds)):
        row.update(median_ms=float(np.median(times)), p90_ms=float(np.percentile(times, 90)),
                   runs=len(times))
    return rows


def render_markdown(result):
    rows = {row["method"]: row for row in result["rows"] if "runtime" not in row}   # Paddle's
    lines = ["# ResNet-18 224 INT8 latency", "",
             "Reproduce: `python -m benchmarks.resnet18_latency`. Briefly trained weights "
             "(latency only), batch 1, {} threads, interleaved.".format(result["cpu_threads"]),
             "", "machine: " + result["machine"], "",
             "| case | median ms | p90 ms | runs | residual adds fused into INT8 convs |",
             "|---|---|---|---|---|"]
    for row in result["rows"]:
        fused = "-" if row["fused_residual_convs"] is None else row["fused_residual_convs"]
        lines.append("| {} | {:.1f} | {:.1f} | {} | {} |".format(
            row["case"], row["median_ms"], row["p90_ms"], row["runs"], fused))
    lines += ["", "ResidualQAT INT8 / PaddleSlim INT8: {:.2f}; ResidualQAT INT8 / oneDNN fp32: "
              "{:.2f}".format(rows["residual_qat"]["median_ms"] / rows["paddleslim_qat"]["median_ms"],
                              rows["residual_qat"]["median_ms"] / rows["float"]["median_ms"])]
    other = {(r["runtime"], r["precision"]): r["median_ms"] for r in result["rows"]
             if "runtime" in r}
    best_fp32 = min([rows["float"]["median_ms"]] + [ms for (_, p), ms in other.items()
                                                     if p == "fp32"])
    best_int8 = min([rows["residual_qat"]["median_ms"], rows["paddleslim_qat"]["median_ms"]] +
                    [ms for (_, p), ms in other.items() if p == "int8"])
    lines.append("Best INT8 / best fp32 over every runtime: {:.2f}".format(best_int8 / best_fp32))
    return "\n".join(lines)


def main(argv=None):
    from benchmarks.qat_compare import built_or_exit, timing_parser, write_results
    from slimext.deploy.hardware import isa_line

    parser = timing_parser(__doc__, "bench_output/resnet18_latency", 60, 20.0)
    parser.add_argument("--cpu_threads", type=int, default=2)
    flags = parser.parse_args(argv)
    dirs = built_or_exit(build_models, flags.workdir, "models")
    result = {"machine": isa_line(), "cpu_threads": flags.cpu_threads,
              "load_average_at_start": os.getloadavg()[0],
              "rows": time_cases(dirs, flags.runs, flags.max_seconds, flags.cpu_threads)}
    write_results(flags.results_dir, "resnet18_latency", result, render_markdown(result))


if __name__ == "__main__":
    main()
