"""The whole job on the synthetic demo set, end to end, in one command.

    python -m slimext.demo --workdir demo_output [--epochs 16] [--quick]

Stages: demo data -> float training -> dygraph evaluation -> export -> Paddle Inference
(plain fp32 and oneDNN: mAP and latency) -> ResidualQAT -> fake-quant evaluation -> INT8
QDQ export -> oneDNN INT8 inference -> one detection PNG -> report.md/report.json.

Extension point: a stage is a function taking the shared `DemoContext`; `build_stages()`
returns the ordered list. Later stages (QAT training, INT8 export, INT8 inference) are added
there and put their numbers into `context.results` under their own keys; the report shows
every entry of `context.results["inference"]` without changes.
"""
import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field

from slimext.isolation import StepFailed, run_in_fresh_process

DEMO_CONFIG = "configs/picodet/picodet_xs_192_demo_lcnet.yml"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class DemoContext:
    workdir: str
    epochs: int = 16
    qat_epochs: int = 3
    quick: bool = False
    num_train: int = 240
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
        """-o settings pointing the demo config at this run's dataset."""
        return ["{}.dataset_dir={}".format(section, self.dataset_dir)
                for section in ("TrainDataset", "EvalDataset", "TestDataset")]


@dataclass
class Stage:
    name: str
    run: object  # callable(DemoContext)


def log(message):
    print("[demo] {}".format(message), flush=True)


def run_step(context, name, func, *args):
    """func(*args) in a fresh process, its log in workdir/logs/<name>.log."""
    os.makedirs(context.path("logs"), exist_ok=True)
    log_path = context.path("logs", name + ".log")
    if os.path.exists(log_path):
        os.remove(log_path)
    try:
        return run_in_fresh_process(func, *args, log_path=log_path)
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
    with open(stamp, "w") as f:
        json.dump(params, f)
    log("dataset: {} train / {} val images, {} / {} boxes in {}".format(
        context.num_train, context.num_val, counts["train"], counts["val"],
        context.dataset_dir))
    context.results["dataset"] = params


def train_float(context):
    from slimext.commands.train import main as train_main

    save_dir = context.path("output")
    argv = ["-c", context.config, "--output_dir", save_dir, "--seed", str(context.seed),
            "-o", "epoch={}".format(context.epochs),
            "TrainReader.batch_size={}".format(context.batch_size)] + context.dataset_overrides()
    log("train: {} epochs of {} images, batch {} (log: {})".format(
        context.epochs, context.num_train, context.batch_size, context.path("logs", "train.log")))
    run_step(context, "train", train_main, argv)
    model_name = os.path.splitext(os.path.basename(context.config))[0]
    context.artifacts["float_weights"] = os.path.join(save_dir, model_name, "model_final")


def evaluate_float(context):
    from slimext.commands.eval import run as eval_run

    argv = ["-c", context.config, "--output_eval", context.path("eval"), "-o",
            "weights={}".format(context.artifacts["float_weights"])] + context.dataset_overrides()
    results = run_step(context, "eval", eval_run, argv)
    stats = results.get("bbox", [0.0, 0.0])
    context.results["dygraph"] = {"mAP": float(stats[0]), "mAP50": float(stats[1])}
    log("eval (dygraph): mAP {:.3f}, mAP@0.5 {:.3f}".format(stats[0], stats[1]))


def export_float(context):
    from slimext.commands.export import run as export_run

    argv = ["-c", context.config, "--output_dir", context.path("inference", "float"), "-o",
            "weights={}".format(context.artifacts["float_weights"])] + context.dataset_overrides()
    model_dir = run_step(context, "export", export_run, argv)
    context.artifacts["float_model_dir"] = model_dir
    context.results["model_size_mb"] = {"float": model_size_mb(model_dir)}
    log("export: {} ({:.2f} MB)".format(model_dir, context.results["model_size_mb"]["float"]))


QAT_SLIM_CONFIG = "configs/slim/residual_qat/picodet_demo_residual_qat.yml"


def train_slim(context, name, slim_config):
    """Train with a slim config (QAT) from the float weights; returns the final checkpoint."""
    from slimext.commands.train import main as train_main

    save_dir = context.path("output")
    argv = ["-c", context.config, "--slim_config", slim_config, "--output_dir", save_dir,
            "--seed", str(context.seed), "-o",
            "pretrain_weights={}".format(context.artifacts["float_weights"]),
            "epoch={}".format(context.qat_epochs),
            "TrainReader.batch_size={}".format(context.batch_size)] + context.dataset_overrides()
    log("{}: {} epochs of {} (log: {})".format(
        name, context.qat_epochs, os.path.basename(slim_config),
        context.path("logs", "train_{}.log".format(name))))
    run_step(context, "train_" + name, train_main, argv)
    # ppdet names the save folder after the config file, here the slim config.
    return os.path.join(save_dir, os.path.splitext(os.path.basename(slim_config))[0],
                        "model_final")


def evaluate_slim(context, name, slim_config, weights):
    """COCO mAP of the fake-quant dygraph model: {"mAP": .., "mAP50": ..}."""
    from slimext.commands.eval import run as eval_run

    argv = ["-c", context.config, "--slim_config", slim_config,
            "--output_eval", context.path("eval_" + name), "-o",
            "weights={}".format(weights)] + context.dataset_overrides()
    stats = run_step(context, "eval_" + name, eval_run, argv).get("bbox", [0.0, 0.0])
    return {"mAP": float(stats[0]), "mAP50": float(stats[1])}


def export_slim(context, name, slim_config, weights):
    """The slim method's own export (QDQ for QAT); returns the model folder."""
    from slimext.commands.export import run as export_run

    argv = ["-c", context.config, "--slim_config", slim_config,
            "--output_dir", context.path("inference", name), "-o",
            "weights={}".format(weights)] + context.dataset_overrides()
    return run_step(context, "export_" + name, export_run, argv)


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


def draw_example(context):
    from slimext.deploy.predictor import DetectorPredictor
    from slimext.deploy.preprocess import load_image
    from slimext.deploy.visualize import save_detections_png

    predictor = DetectorPredictor(context.artifacts["float_model_dir"], "fp32",
                                  context.cpu_threads)
    image = load_image(os.path.join(context.dataset_dir, "val", "val_00000.png"))
    path = save_detections_png(image, predictor.predict(image), context.path("detections.png"))
    context.artifacts["example_png"] = path
    log("detections drawn: {}".format(path))


def write_report(context):
    from slimext.demo_report import render_markdown

    report = dict(context.results)
    report["settings"] = {"config": os.path.relpath(context.config, REPO_ROOT),
                          "epochs": context.epochs, "quick": context.quick,
                          "cpu_threads": context.cpu_threads}
    report["example_png"] = context.artifacts.get("example_png")
    with open(context.path("report.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(context.path("report.md"), "w") as f:
        f.write(render_markdown(report))
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
        Stage("draw", draw_example),
        Stage("report", write_report),
    ]


def run_stages(context, stages):
    context.results.setdefault("stage_seconds", {})
    for index, stage in enumerate(stages, 1):
        log("stage {}/{}: {}".format(index, len(stages), stage.name))
        start = time.time()
        stage.run(context)
        context.results["stage_seconds"][stage.name] = round(time.time() - start, 1)
    return context


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="demo_output", help="everything goes here")
    parser.add_argument("--epochs", type=int, default=16, help="float training epochs")
    parser.add_argument("--qat_epochs", type=int, default=3, help="ResidualQAT epochs")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 16 train / 8 val images, 1 epoch, few timing runs")
    parser.add_argument("--cpu_threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
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
    context = context_from_flags(flags)
    os.makedirs(context.workdir, exist_ok=True)
    start = time.time()
    try:
        run_stages(context, build_stages())
    except StepFailed as error:
        print("Error: demo stage failed: {}".format(error), file=sys.stderr)
        sys.exit(1)
    log("done in {:.0f} s".format(time.time() - start))


if __name__ == "__main__":
    main()
