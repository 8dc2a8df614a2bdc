"""Per model family at its COCO input size: oneDNN fp32 vs slimext INT8 vs PaddleSlim INT8.

For each family the float export of the config's random weights, the ResidualQAT INT8 QDQ
export and PaddleSlim's stock QAT INT8 export (both with scales calibrated on demo images:
slimext.latency_exports says why that is enough for latency) are timed in Paddle
Inference (oneDNN fp32, oneDNN INT8), interleaved in one run (one inference of each per
round, so machine load hits all alike). Each INT8 row carries its kernel line (what ran
INT8). Post-processing is left out where the family's exporter allows it (PicoDet's
`export.benchmark`); elsewhere box decoding and NMS are in every program alike, NMS with a
score threshold that random-weight scores do not reach. Writes benchmarks/results/family_latency.{json,md}.

    python -m benchmarks.family_latency [--families ppyoloe_plus_s,yolov3_mbv3] [--runs 20]
"""
import argparse
import json
import os

from slimext.fileio import atomic_write_json, atomic_write_text
from slimext.isolation import StepFailed, run_in_fresh_process

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PADDLESLIM_QAT = "configs/slim/quant/paddleslim_qat.yml"
# Where decoding and NMS stay in the program: random weights score every anchor near 0.5,
# and NMS over all of them (seconds per image) would be all that is timed; at this
# threshold NMS gets next to nothing, as with trained weights on a typical image.
RANDOM_WEIGHTS_SCORE_THRESHOLD = 0.9
# family -> (COCO config, ResidualQAT slim config, export overrides that drop post-processing)
FAMILIES = {
    "picodet_s_lcnet": ("configs/picodet/picodet_s_320_coco_lcnet.yml",
                        "configs/slim/residual_qat/picodet_s_320_residual_qat.yml",
                        {"export.benchmark": True}),
    "picodet_s_esnet": ("configs/picodet/legacy_model/picodet_s_320_coco.yml",
                        "configs/slim/residual_qat/picodet_esnet_demo_residual_qat.yml",
                        {"export.benchmark": True}),
    "ppyoloe_plus_s": ("configs/ppyoloe/ppyoloe_plus_crn_s_80e_coco.yml",
                       "configs/slim/residual_qat/ppyoloe_plus_s_demo_residual_qat.yml",
                       {"PPYOLOEHead.nms.score_threshold": RANDOM_WEIGHTS_SCORE_THRESHOLD}),
    "yolov3_mbv3": ("configs/yolov3/yolov3_mobilenet_v3_large_270e_coco.yml",
                    "configs/slim/residual_qat/yolov3_mobilenet_v3_demo_residual_qat.yml",
                    {"BBoxPostProcess.nms.score_threshold": RANDOM_WEIGHTS_SCORE_THRESHOLD}),
    "gfl_r18vd": ("configs/gfl/gfl_r18vd_1x_coco.yml",
                  "configs/slim/residual_qat/gfl_r18vd_demo_residual_qat.yml",
                  {"GFLHead.nms.score_threshold": RANDOM_WEIGHTS_SCORE_THRESHOLD}),
}
# Goal on a VNNI CPU: slimext INT8 at most this fraction of oneDNN fp32's time.
GOAL_RATIO = 0.6


def _step(workdir, name, func, *args, **kwargs):
    os.makedirs(os.path.join(workdir, "logs"), exist_ok=True)
    log_path = os.path.join(workdir, "logs", name + ".log")
    try:
        return run_in_fresh_process(func, *args, log_path=log_path, **kwargs)
    except StepFailed as error:
        return {"error": str(error)}


def build_family(workdir, config, slim_config, overrides, image_dir):
    """{"float" | "residual_qat" | "paddleslim_qat": export folder or {"error": ...}}."""
    from slimext import pipeline
    from slimext import latency_exports as exports

    config, slim_config = (os.path.join(REPO_ROOT, p) for p in (config, slim_config))
    weights = _step(workdir, "weights", exports.save_random_weights, workdir, config,
                    image_dir)
    built = {"float": _step(workdir, "export_float", pipeline.export, config, weights,
                            os.path.join(workdir, "float"), overrides=overrides)}
    if isinstance(built["float"], dict):
        return built
    for method, slim in (("residual_qat", slim_config),
                         ("paddleslim_qat", os.path.join(REPO_ROOT, PADDLESLIM_QAT))):
        calibrated = _step(workdir, "calibrate_" + method, exports.calibrate_quantized_weights,
                           workdir, config, slim, weights, built["float"], image_dir, 4)
        if "error" in calibrated:
            built[method] = calibrated
            continue
        built[method] = _step(workdir, "export_" + method, pipeline.export, config,
                              calibrated["weights"], os.path.join(workdir, method),
                              slim_config=slim, overrides=overrides)
    return built


CASES = (("float", "onednn", "oneDNN fp32"), ("residual_qat", "int8", "slimext INT8"),
         ("paddleslim_qat", "int8", "PaddleSlim INT8"))


def time_family(built, runs, max_seconds, cpu_threads=2):
    """Rows per case, timed interleaved; a case that cannot build or run says why."""
    from slimext.deploy.latency import latency_of
    from slimext.deploy.predictor import PredictorError
    from slimext.deploy.preprocess import bench_image
    from slimext.deploy.runtime_choice import time_interleaved
    from slimext.deploy.runtimes import create_detector
    from slimext.deploy.int8_kernels import Int8NotUsedError

    rows, runners = [], []
    for method, precision, label in CASES:
        row = {"method": method, "label": label, "precision": precision}
        rows.append(row)
        model_dir = built.get(method)
        if not isinstance(model_dir, str):
            row["error"] = (model_dir or {}).get("error", "not built")
            continue
        try:
            detector = create_detector(model_dir, "paddle", precision, cpu_threads)
            inputs = detector.preprocess(bench_image(model_dir))
            for _ in range(3):
                detector.run_raw(inputs)
        except (Int8NotUsedError, PredictorError, RuntimeError, ValueError) as error:
            row["error"] = "{}: {}".format(type(error).__name__, str(error).strip()[-300:])
            continue
        if detector.int8_report is not None:
            row["int8_kernels"] = detector.int8_report.line()
        runners.append((row, lambda d=detector, i=inputs: d.run_raw(i)))
    times = time_interleaved([run for _, run in runners], runs, max_seconds)
    for (row, _), case_times in zip(runners, times):
        latency = latency_of(case_times)
        row.update(median_ms=latency.median_ms, p90_ms=latency.p90_ms, runs=latency.runs)
    fp32 = rows[0].get("median_ms")
    for row in rows[1:]:
        if fp32 and row.get("median_ms"):
            row["vs_fp32"] = row["median_ms"] / fp32
    return rows


def render_markdown(result):
    lines = ["# INT8 latency per model family (COCO input sizes)", "",
             "Reproduce: `python -m benchmarks.family_latency`. Random weights, scales "
             "calibrated on demo images: latency only. Machine: {}.".format(result["isa_line"]),
             "", "| family | case | median ms | p90 ms | vs oneDNN fp32 | INT8 kernels |",
             "|---|---|---|---|---|---|"]
    for family, rows in result["families"].items():
        for row in rows:
            if "median_ms" not in row:
                lines.append("| {} | {} | failed | | | {} |".format(
                    family, row["label"], row.get("error", "")[-200:].replace("|", "/")))
                continue
            lines.append("| {} | {} | {:.1f} | {:.1f} | {} | {} |".format(
                family, row["label"], row["median_ms"], row["p90_ms"],
                "{:.2f}x".format(row["vs_fp32"]) if "vs_fp32" in row else "",
                row.get("int8_kernels", "-")))
    lines += ["", "Goal on a VNNI CPU: slimext INT8 <= {}x oneDNN fp32, and <= PaddleSlim's "
              "INT8 where PaddleSlim runs.".format(GOAL_RATIO)]
    return "\n".join(lines) + "\n"


def main(argv=None):
    from slimext.data.demo import generate
    from slimext.deploy.hardware import describe_machine, isa_line

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="bench_output/family_latency")
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help="comma-separated, from: " + ", ".join(FAMILIES))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--max_seconds", type=float, default=10.0)
    parser.add_argument("--results", default=os.path.join(REPO_ROOT, "benchmarks", "results"))
    flags = parser.parse_args(argv)
    names = [n for n in flags.families.split(",") if n]
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        parser.error("unknown family {!r}; choose from {}".format(unknown[0],
                                                                 ", ".join(FAMILIES)))
    image_dir = os.path.join(flags.workdir, "demo", "val")
    if not os.path.isdir(image_dir):
        generate(os.path.join(flags.workdir, "demo"), num_train=4, num_val=8, seed=0)
    families = {}
    for name in names:
        config, slim, overrides = FAMILIES[name]
        workdir = os.path.join(flags.workdir, name)
        built_path = os.path.join(workdir, "built.json")
        if os.path.isfile(built_path):   # reuse the exports of an earlier run
            with open(built_path) as f:
                built = json.load(f)
        else:
            built = build_family(workdir, config, slim, overrides, image_dir)
            atomic_write_json(built_path, built, indent=1)
        families[name] = time_family(built, flags.runs, flags.max_seconds)
        print(name, json.dumps(families[name], indent=1), flush=True)
    machine = describe_machine()
    result = {"machine": machine, "isa_line": isa_line(machine), "families": families}
    os.makedirs(flags.results, exist_ok=True)
    atomic_write_json(os.path.join(flags.results, "family_latency.json"), result, indent=1)
    atomic_write_text(os.path.join(flags.results, "family_latency.md"), render_markdown(result))
    print(render_markdown(result))


if __name__ == "__main__":
    main()
