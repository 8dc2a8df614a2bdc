"""The whole job on the synthetic demo set, end to end, in one command.

    python -m slimext.demo --workdir demo_output [--epochs 12] [--quick] [--quiet]

Stages: demo data -> float training -> dygraph evaluation -> export -> Paddle Inference
(plain fp32 and oneDNN: mAP and latency) -> ResidualQAT -> fake-quant evaluation -> INT8
QDQ export -> oneDNN INT8 inference -> float and INT8 timed again interleaved on every
installed runtime (the latencies the report uses) -> PicoDet-S 320 timed the same way (what
INT8 buys at a real size) -> pictures (detection grid, bar chart) -> report.md/report.json.

Extension point: a stage is a function taking the shared `DemoContext`; `build_stages()`
returns the ordered list. Each stage puts its numbers into `context.results` under its own
key; the report shows every entry of `context.results["inference"]`.
"""
import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field

from slimext.isolation import StepFailed, run_in_fresh_process
from slimext.progress import hand_over_terminal
from slimext.fileio import atomic_write_json, atomic_write_text

DEMO_CONFIG = "configs/picodet/picodet_xs_192_demo_lcnet.yml"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class DemoContext:
    workdir: str
    epochs: int = 12
    qat_epochs: int = 3
    quick: bool = False
    num_train: int = 320
    num_val: int = 60
    seed: int = 0
    cpu_threads: int = 2
    latency_runs: int = 25
    batch_size: int = 8
    config: str = os.path.join(REPO_ROOT, DEMO_CONFIG)
    artifacts: dict = field(default_factory=dict)   # paths made by earlier stages
    results: dict = field(default_factory=dict)     # numbers for the report

    def path(self, *parts):
        return os.path.join(self.workdir, *parts)

    @property
    def dataset_dir(self):
        return self.path("dataset", "demo")

    def dataset_overrides(self):
        """Overrides pointing the demo config at this run's dataset."""
        return {"{}.dataset_dir".format(section): self.dataset_dir
                for section in ("TrainDataset", "EvalDataset", "TestDataset")}


@dataclass
class Stage:
    name: str
    run: object  # callable(DemoContext)


def log(message):
    print("[demo] {}".format(message), flush=True)


def run_step(context, name, func, *args, **kwargs):
    """func(*args, **kwargs) in a fresh process, its log in workdir/logs/<name>.log."""
    os.makedirs(context.path("logs"), exist_ok=True)
    log_path = context.path("logs", name + ".log")
    if os.path.exists(log_path):
        os.remove(log_path)
    try:
        return run_in_fresh_process(func, *args, log_path=log_path, **kwargs)
    except StepFailed:
        with open(log_path) as f:
            tail = f.readlines()[-15:]
        print("".join(tail), file=sys.stderr)
        raise


# --- stages -------------------------------------------------------------------------------

def make_dataset(context):
    from slimext.data.demo import generate

    params = {"num_train": context.num_train, "num_val": context.num_val, "seed": context.seed}
    stamp = os.path.join(context.dataset_dir, "demo_params.json")
    if os.path.isfile(stamp):
        with open(stamp) as f:
            if json.load(f) == params:
                log("dataset: reusing {}".format(context.dataset_dir))
                context.results["dataset"] = params
                return
    counts = generate(context.dataset_dir, **params)
    # Written last: a stamp only exists beside a complete set.
    atomic_write_json(stamp, params)
    log("dataset: {} train / {} val images, {} / {} boxes in {}".format(
        context.num_train, context.num_val, counts["train"], counts["val"],
        context.dataset_dir))
    context.results["dataset"] = params


def train_float(context):
    from slimext import pipeline

    log("train: {} epochs of {} images, batch {} (log: {})".format(
        context.epochs, context.num_train, context.batch_size, context.path("logs", "train.log")))
    context.artifacts["float_weights"] = run_step(
        context, "train", pipeline.train, context.config, output_dir=context.path("output"),
        seed=context.seed, overrides=dict(context.dataset_overrides(), epoch=context.epochs,
                                          **{"TrainReader.batch_size": context.batch_size}))


def evaluate_float(context):
    from slimext import pipeline

    results = run_step(context, "eval", pipeline.evaluate, context.config,
                       context.artifacts["float_weights"], output_eval=context.path("eval"),
                       overrides=context.dataset_overrides())
    stats = results.get("bbox", [0.0, 0.0])
    context.results["dygraph"] = {"mAP": float(stats[0]), "mAP50": float(stats[1])}
    log("eval (dygraph): mAP {:.3f}, mAP@0.5 {:.3f}".format(stats[0], stats[1]))


def export_float(context):
    from slimext import pipeline

    model_dir = run_step(context, "export", pipeline.export, context.config,
                         context.artifacts["float_weights"], context.path("inference", "float"),
                         overrides=context.dataset_overrides())
    context.artifacts["float_model_dir"] = model_dir
    context.results["model_size_mb"] = {"float": model_size_mb(model_dir)}
    log("export: {} ({:.2f} MB)".format(model_dir, context.results["model_size_mb"]["float"]))


QAT_SLIM_CONFIG = "configs/slim/residual_qat/picodet_demo_residual_qat.yml"


def train_slim(context, name, slim_config):
    """Train with a slim config (QAT) from the float weights; returns the final checkpoint
    (ppdet names the run's folder after the slim config)."""
    from slimext import pipeline

    log("{}: {} epochs of {} (log: {})".format(
        name, context.qat_epochs, os.path.basename(slim_config),
        context.path("logs", "train_{}.log".format(name))))
    return run_step(context, "train_" + name, pipeline.train, context.config,
                    output_dir=context.path("output"), slim_config=slim_config,
                    pretrain_weights=context.artifacts["float_weights"], seed=context.seed,
                    overrides=dict(context.dataset_overrides(), epoch=context.qat_epochs,
                                   **{"TrainReader.batch_size": context.batch_size}))


def evaluate_slim(context, name, slim_config, weights):
    """COCO mAP of the fake-quant dygraph model: {"mAP": .., "mAP50": ..}."""
    from slimext import pipeline

    results = run_step(context, "eval_" + name, pipeline.evaluate, context.config, weights,
                       slim_config=slim_config, output_eval=context.path("eval_" + name),
                       overrides=context.dataset_overrides())
    stats = results.get("bbox", [0.0, 0.0])
    return {"mAP": float(stats[0]), "mAP50": float(stats[1])}


def export_slim(context, name, slim_config, weights):
    """The slim method's own export (QDQ for QAT); returns the model folder."""
    from slimext import pipeline

    return run_step(context, "export_" + name, pipeline.export, context.config, weights,
                    context.path("inference", name), slim_config=slim_config,
                    overrides=context.dataset_overrides())


def train_qat(context):
    """Residual-aware QAT starting from the float weights."""
    slim = os.path.join(REPO_ROOT, QAT_SLIM_CONFIG)
    context.artifacts["qat_weights"] = train_slim(context, "qat", slim)
    context.artifacts["qat_slim_config"] = slim


def evaluate_qat(context):
    stats = evaluate_slim(context, "qat", context.artifacts["qat_slim_config"],
                          context.artifacts["qat_weights"])
    context.results["dygraph_qat"] = stats
    log("eval (fake-quant dygraph): mAP {:.3f}, mAP@0.5 {:.3f}".format(stats["mAP"],
                                                                       stats["mAP50"]))


def export_qat(context):
    model_dir = export_slim(context, "int8", context.artifacts["qat_slim_config"],
                            context.artifacts["qat_weights"])
    context.artifacts["int8_model_dir"] = model_dir
    context.results["model_size_mb"]["int8"] = model_size_mb(model_dir)
    log("export (INT8 QDQ): {} ({:.2f} MB)".format(model_dir,
                                                  context.results["model_size_mb"]["int8"]))


def write_text(path, text):
    """A reader never sees half a report (written beside `path`, then renamed)."""
    atomic_write_text(path, text)


def model_size_mb(model_dir):
    names = ("model.pdmodel", "model.pdiparams")
    return sum(os.path.getsize(os.path.join(model_dir, n)) for n in names) / 1e6


def inference_stage(label, model_key, precision):
    """A stage measuring artifacts[model_key] at `precision`, reported as `label`."""

    def run(context):
        model_dir = context.artifacts[model_key]
        from slimext.deploy.benchmark import measure_predictor

        result = run_step(context, "infer_" + label.replace("/", "_"), measure_predictor,
                          model_dir, precision, context.dataset_dir, context.cpu_threads,
                          context.latency_runs)
        context.results.setdefault("inference", {})[label] = result
        log("inference {}: mAP {:.3f}, median latency {:.1f} ms ({} threads)".format(
            label, result["mAP"], result["latency_ms"], context.cpu_threads))

    run.__name__ = "inference_" + label.replace("/", "_")
    return run


# (runtime, precision) of a bench row -> the inference label it times.
BENCH_LABELS = {("paddle", "fp32"): "float/fp32", ("paddle", "onednn"): "float/onednn",
                ("paddle", "int8"): "int8/onednn"}


def bench_runtimes(context):
    """Time the float and the INT8 export again on every installed runtime, interleaved
    (one run of each per round): the inference stages ran minutes apart, and a shared
    machine's speed drifts more than the INT8 gain. The Paddle latencies of the inference
    stages are replaced by these; the mAPs stay."""
    from slimext.deploy.runtime_choice import run_bench

    dirs = [context.artifacts["float_model_dir"], context.artifacts["int8_model_dir"]]
    # runtimes None: every installed runtime, decided in the step's own process
    result = run_step(context, "bench", run_bench, dirs, None,
                      context.cpu_threads, context.latency_runs, 3, 8.0, None, False)
    inference = context.results.setdefault("inference", {})
    for row in result["rows"]:
        label = BENCH_LABELS.get((row["runtime"], row["precision"]))
        if label in inference and "median_ms" in row:
            inference[label].update(latency_ms=row["median_ms"], latency_runs=row["runs"],
                                    interleaved=True)
    context.results["bench"] = bench_summary(result)
    log("interleaved timing: " + result["recommendation"])


def bench_summary(result):
    """What the report keeps of a run_bench result: the rows, the verdict, the machine."""
    return {"recommendation": result["recommendation"], "isa_line": result["isa_line"],
            "load_average": result["load_average"], "rows": result["rows"]}


REAL_SIZE_CONFIG = "configs/picodet/picodet_s_320_coco_lcnet.yml"
REAL_SIZE_SLIM_CONFIG = "configs/slim/residual_qat/picodet_s_320_residual_qat.yml"
REAL_SIZE_MODEL = "PicoDet-S LCNet 320 (80 classes)"


def bench_real_size(context):
    """PicoDet-S 320 timed like the demo model, on every runtime: the tiny demo model is
    too small for INT8 to pay, a real-size one shows what INT8 buys on this CPU. Random
    weights with scales calibrated on demo images (slimext.latency_exports): latency only."""
    from slimext.deploy.runtime_choice import run_bench
    from slimext.latency_exports import build_latency_exports

    images = 2 if context.quick else 8
    exports = build_latency_exports(
        context.path("real_size"), os.path.join(REPO_ROOT, REAL_SIZE_CONFIG),
        os.path.join(REPO_ROOT, REAL_SIZE_SLIM_CONFIG), os.path.join(context.dataset_dir, "val"),
        log_dir=context.path("logs"), num_images=images)
    result = run_step(context, "bench_real_size", run_bench, [exports["float"], exports["int8"]],
                      None, context.cpu_threads, context.latency_runs, 3, 8.0, None, False)
    context.results["real_size"] = dict(bench_summary(result), model=REAL_SIZE_MODEL,
                                        calibration_images=images)
    log("real size ({}): {}".format(REAL_SIZE_MODEL, result["recommendation"]))


GRID_IMAGES = 4        # val images in the picture grid (the first ones: not hand-picked)
DRAW_THRESHOLD = 0.4   # score from which a detection is drawn (stated in the picture)


def _ground_truth(dataset_dir, count):
    """[(file path, [(class_id, x, y, w, h)])] of the first `count` val images."""
    with open(os.path.join(dataset_dir, "annotations", "instances_val.json")) as f:
        coco = json.load(f)
    images = sorted(coco["images"], key=lambda image: image["id"])[:count]
    rows = []
    for image in images:
        objects = [(a["category_id"] - 1, *a["bbox"]) for a in coco["annotations"]
                   if a["image_id"] == image["id"]]
        rows.append((os.path.join(dataset_dir, "val", image["file_name"]), objects))
    return rows


def draw_grid(dataset_dir, models, out_path, cpu_threads):
    """Ground truth | each model's detections on the first val images, as one PNG.

    models: [[column title, model dir, precision]]. Returns the pictures entry of the report.
    Runs in its own process: Paddle Inference's oneDNN passes print to the console."""
    from slimext.deploy.predictor import DetectorPredictor
    from slimext.deploy.preprocess import load_image
    from slimext.deploy.visualize import detection_grid, write_png

    predictors = [(title, DetectorPredictor(model_dir, precision, cpu_threads))
                  for title, model_dir, precision in models]
    examples = []
    for path, objects in _ground_truth(dataset_dir, GRID_IMAGES):
        image = load_image(path)
        found = [(title, predictor.predict(image)) for title, predictor in predictors]
        examples.append((image, objects, found[0][1].labels, found))
    grid, drawn = detection_grid(examples, DRAW_THRESHOLD)
    write_png(grid, out_path)
    return {"grid": os.path.basename(out_path), "threshold": DRAW_THRESHOLD,
            "columns": ["ground truth"] + [title for title, _, _ in models],
            "boxes_drawn": drawn}


def draw_pictures(context):
    """detections.png (ground truth | float | INT8 on val images) and metrics.png (bars)."""
    from slimext.deploy.visualize import metrics_chart

    columns = [("float, oneDNN fp32", "float_model_dir", "onednn"),
               ("INT8, oneDNN", "int8_model_dir", "int8")]
    models = [[title, context.artifacts[key], precision]
              for title, key, precision in columns if key in context.artifacts]
    pictures = run_step(context, "pictures", draw_grid, context.dataset_dir, models,
                        context.path("detections.png"), context.cpu_threads)
    metrics_chart(chart_variants(context.results), context.path("metrics.png"))
    pictures["chart"] = "metrics.png"
    context.results["pictures"] = pictures
    drawn = sum(sum(row) for row in pictures["boxes_drawn"])
    log("pictures: {} ({} val images x ground truth | {}; {} boxes with score >= {}) and {}"
        .format(context.path("detections.png"), len(pictures["boxes_drawn"]),
                " | ".join(title for title, _, _ in models), drawn, DRAW_THRESHOLD,
                context.path("metrics.png")))


def chart_variants(results):
    """(name, mAP, latency ms) per model variant, in pipeline order."""
    variants = []
    if results.get("dygraph"):
        variants.append(("float (dygraph)", results["dygraph"]["mAP"], None))
    if results.get("dygraph_qat"):
        variants.append(("ResidualQAT fake-quant (dygraph)", results["dygraph_qat"]["mAP"],
                         None))
    for label, r in results.get("inference", {}).items():
        variants.append((INFERENCE_NAMES.get(label, label), r["mAP"], r["latency_ms"]))
    return variants


INFERENCE_NAMES = {"float/fp32": "float, Paddle Inference fp32",
                   "float/onednn": "float, oneDNN fp32", "int8/onednn": "INT8, oneDNN INT8"}


def write_report(context):
    from slimext.demo_report import render_markdown
    from slimext.deploy.hardware import describe_machine

    report = dict(context.results)
    report["settings"] = {"config": os.path.relpath(context.config, REPO_ROOT),
                          "epochs": context.epochs, "quick": context.quick,
                          "cpu_threads": context.cpu_threads}
    report["machine"] = describe_machine()
    write_text(context.path("report.json"), json.dumps(report, indent=2))
    write_text(context.path("report.md"), render_markdown(report))
    log("report: {} and {}".format(context.path("report.md"), context.path("report.json")))


def build_stages():
    """The ordered stages; insert QAT/INT8 stages before "report"."""
    return [
        Stage("dataset", make_dataset),
        Stage("train", train_float),
        Stage("eval", evaluate_float),
        Stage("export", export_float),
        Stage("infer fp32", inference_stage("float/fp32", "float_model_dir", "fp32")),
        Stage("infer onednn", inference_stage("float/onednn", "float_model_dir", "onednn")),
        Stage("qat", train_qat),
        Stage("eval qat", evaluate_qat),
        Stage("export int8", export_qat),
        Stage("infer int8", inference_stage("int8/onednn", "int8_model_dir", "int8")),
        Stage("bench", bench_runtimes),
        Stage("real-size latency", bench_real_size),
        Stage("pictures", draw_pictures),
        Stage("report", write_report),
    ]


def run_stages(context, stages):
    from slimext.progress import clock

    context.results.setdefault("stage_seconds", {})
    for index, stage in enumerate(stages, 1):
        log("stage {}/{}: {}".format(index, len(stages), stage.name))
        start = time.time()
        stage.run(context)
        context.results["stage_seconds"][stage.name] = round(time.time() - start, 1)
        log("stage {}/{}: {} done in {}".format(index, len(stages), stage.name,
                                               clock(time.time() - start)))
    return context


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="demo_output", help="everything goes here")
    parser.add_argument("--epochs", type=int, default=12, help="float training epochs")
    parser.add_argument("--qat_epochs", type=int, default=3, help="ResidualQAT epochs")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 16 train / 8 val images, 1 epoch, few timing runs")
    parser.add_argument("--cpu_threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars on the terminal (stage lines and logs stay)")
    return parser


def context_from_flags(flags):
    context = DemoContext(workdir=os.path.abspath(flags.workdir), epochs=flags.epochs,
                          quick=flags.quick, cpu_threads=flags.cpu_threads, seed=flags.seed,
                          qat_epochs=flags.qat_epochs)
    if flags.quick:
        context.num_train, context.num_val = 16, 8
        context.epochs, context.batch_size, context.latency_runs = 1, 4, 5
        context.qat_epochs = 1
    return context


def main(argv=None):
    flags = build_parser().parse_args(argv)
    if flags.epochs < 1:
        build_parser().error("--epochs must be at least 1")
    from slimext.commands.console import filter_third_party_warnings

    filter_third_party_warnings()  # the demo's own process, as every tool's
    context = context_from_flags(flags)
    os.makedirs(context.workdir, exist_ok=True)
    # Training steps log to files; their progress bars go to this terminal (if it is one).
    hand_over_terminal(flags.quiet)
    start = time.time()
    try:
        run_stages(context, build_stages())
    except StepFailed as error:
        print("Error: demo stage failed: {}".format(error), file=sys.stderr)
        sys.exit(1)
    log("done in {:.0f} s".format(time.time() - start))


if __name__ == "__main__":
    main()
