"""The model-family matrix: each family trained briefly on the demo set, then ResidualQAT
(and PaddleSlim's stock QAT where a config exists) and ResidualPTQ, exported and run INT8.

    python -m benchmarks.model_families [--workdir bench_output/model_families]
        [--only picodet_lcnet ppyoloe_plus_s] [--epochs 6] [--qat_epochs 1]

Per family, every step in its own process (slimext.pipeline calls): float training, its
dygraph mAP; QAT through pipeline.train with the family's ResidualQAT slim config, the
fake-quant mAP, the validated export (joins by kind and the validator's counts from its
quant_plan.json); the oneDNN INT8 predictor's mAP, kernel line and latency; the INT8
detections against the fake-quant model's on the first val images; pipeline.post_quantize
with the ResidualPTQ config, its fake-quant and INT8 mAP. Writes
benchmarks/results/model_families.{json,md} with the CPU's ISA line and Paddle's version.
"""
import argparse
import collections
import json
import os
import sys
import time

from slimext import demo
from slimext.fileio import atomic_write_json, atomic_write_text
from slimext.isolation import StepFailed

RESULTS_DIR = os.path.join(demo.REPO_ROOT, "benchmarks", "results")
REPRODUCE = "python -m benchmarks.model_families"

# family -> demo config, ResidualQAT, ResidualPTQ, PaddleSlim stock QAT (or None)
FAMILIES = collections.OrderedDict([
    ("picodet_lcnet", ("configs/picodet/picodet_xs_192_demo_lcnet.yml",
                       "configs/slim/residual_qat/picodet_demo_residual_qat.yml",
                       "configs/slim/residual_ptq/picodet_demo_residual_ptq.yml",
                       "configs/slim/quant/picodet_demo_qat.yml")),
    ("picodet_esnet", ("configs/picodet/legacy_model/picodet_s_192_demo_esnet.yml",
                       "configs/slim/residual_qat/picodet_esnet_demo_residual_qat.yml",
                       "configs/slim/residual_ptq/picodet_esnet_demo_residual_ptq.yml", None)),
    ("ppyoloe_plus_s", ("configs/ppyoloe/ppyoloe_plus_crn_s_192_demo.yml",
                        "configs/slim/residual_qat/ppyoloe_plus_s_demo_residual_qat.yml",
                        "configs/slim/residual_ptq/ppyoloe_plus_s_demo_residual_ptq.yml", None)),
    ("yolov3_mobilenet_v3", ("configs/yolov3/yolov3_mobilenet_v3_large_192_demo.yml",
                             "configs/slim/residual_qat/yolov3_mobilenet_v3_demo_residual_qat.yml",
                             "configs/slim/residual_ptq/yolov3_mobilenet_v3_demo_residual_ptq.yml",
                             None)),
    ("gfl_r18vd", ("configs/gfl/gfl_r18vd_192_demo.yml",
                   "configs/slim/residual_qat/gfl_r18vd_demo_residual_qat.yml",
                   "configs/slim/residual_ptq/gfl_r18vd_demo_residual_ptq.yml", None)),
])
AGREEMENT_IMAGES = 4


def log(message):
    print("[families] {}".format(message), flush=True)


class FamilyContext(demo.DemoContext):
    """A demo context whose dataset is shared by every family of the run."""

    def __init__(self, dataset_dir, **kwargs):
        super().__init__(**kwargs)
        self._dataset_dir = dataset_dir

    @property
    def dataset_dir(self):
        return self._dataset_dir


def export_summary(model_dir):
    """Joins quantized by kind and the validator's counts, from the export's quant_plan.json."""
    with open(os.path.join(model_dir, "quant_plan.json")) as f:
        sidecar = json.load(f)
    joins = collections.Counter(j["kind"] for j in sidecar["plan"]["joins"] if not j["skipped"])
    layers = sidecar["plan"]["layers"]
    report = sidecar["report"]
    return {"joins": dict(sorted(joins.items())),
            "float_layers": [layer["path"] for layer in layers if layer["skipped"]],
            "planned_layers": report.get("planned_layers"),
            "int8_weights": report.get("int8_weights"), "qdq_pairs": report.get("qdq_pairs"),
            "join_quantizers": report.get("join_quantizers")}


def int8_agreement(config, slim_config, weights, model_dir, dataset_dir,
                   images=AGREEMENT_IMAGES):
    """Score deviation of the INT8 predictor from the fake-quant dygraph model on the first
    val images: {"max": .., "per_image": [...], "compared": [...]} (see detection_agreement)."""
    import numpy as np
    import paddle
    from ppdet.engine import Trainer

    from slimext import pipeline
    from slimext.analysis.detection_agreement import score_deviation
    from slimext.deploy.predictor import DetectorPredictor
    from slimext.deploy.preprocess import load_image
    from slimext.slim.build import build_slim_model

    overrides = {"{}.dataset_dir".format(s): dataset_dir
                 for s in ("TrainDataset", "EvalDataset", "TestDataset")}
    cfg, opt = pipeline._load(config, dict(overrides, weights=weights), slim_config, "test")
    cfg = build_slim_model(cfg, slim_config, mode="test", overrides=opt, check_coverage=False,
                           print_plan=False)
    trainer = Trainer(cfg, mode="test")
    trainer.load_weights(weights)
    model = trainer.model
    model.eval()
    predictor = DetectorPredictor(model_dir, "int8", cpu_threads=2)
    image_dir = os.path.join(dataset_dir, "val")
    deviations, compared = [], []
    for name in sorted(os.listdir(image_dir))[:images]:
        inputs = predictor.preprocess(load_image(os.path.join(image_dir, name)))
        boxes, counts = predictor.run(inputs)
        with paddle.no_grad():
            out = model({k: paddle.to_tensor(v) for k, v in inputs.items()})
        reference = out["bbox"].numpy()[:int(out["bbox_num"].numpy()[0])]
        deviation, count = score_deviation(reference, boxes[:int(counts[0])])
        deviations.append(deviation)
        compared.append(count)
    known = [d for d in deviations if d is not None]
    return {"max": max(known) if known else None, "per_image": deviations,
            "compared": compared}


def _step(context, name, func, *args, **kwargs):
    """run_step, a failure recorded as {"error": its most telling line}."""
    try:
        return demo.run_step(context, name, func, *args, **kwargs)
    except StepFailed:
        with open(context.path("logs", name + ".log")) as f:
            lines = [line.strip() for line in f if line.strip()]
        errors = [line for line in lines if "Error" in line or "error" in line]
        return {"error": (errors or lines or ["no output"])[-1][:300]}


def _int8(context, label, model_dir):
    from slimext.deploy.benchmark import measure_predictor

    return _step(context, "infer_" + label, measure_predictor, model_dir, "int8",
                 context.dataset_dir, context.cpu_threads, context.latency_runs)


def run_qat(context, label, slim_config):
    """One QAT method: train, fake-quant mAP, validated export, INT8 run and agreement."""
    row = {"slim_config": slim_config}
    state = _context_dict(context)
    weights = _step(context, "train_" + label, _train_slim, state, label, slim_config)
    if isinstance(weights, dict):
        return dict(row, error=weights["error"], stage="train")
    row["fake_quant"] = _step(context, "eval_" + label, _eval_slim, state, slim_config,
                              weights)
    model_dir = _step(context, "export_" + label, _export_slim, state, label, slim_config,
                      weights)
    if isinstance(model_dir, dict):
        return dict(row, error=model_dir["error"], stage="export")
    if os.path.isfile(os.path.join(model_dir, "quant_plan.json")):
        row["export"] = export_summary(model_dir)
    row["int8"] = _int8(context, label, model_dir)
    row["agreement"] = _step(context, "agree_" + label, int8_agreement, context.config,
                             slim_config, weights, model_dir, context.dataset_dir)
    return row


def _train_slim(context_dict, label, slim_config):
    context = _context_from_dict(context_dict)
    from slimext import pipeline

    return pipeline.train(context.config, output_dir=context.path("output_" + label),
                          slim_config=slim_config, pretrain_weights=context.artifacts[
                              "float_weights"], seed=context.seed, quiet=True,
                          overrides=dict(context.dataset_overrides(), epoch=context.qat_epochs,
                                         **{"TrainReader.batch_size": context.batch_size}))


def _eval_slim(context_dict, slim_config, weights):
    context = _context_from_dict(context_dict)
    from slimext import pipeline

    stats = pipeline.evaluate(context.config, weights, slim_config=slim_config,
                              overrides=context.dataset_overrides()).get("bbox", [0.0, 0.0])
    return {"mAP": float(stats[0]), "mAP50": float(stats[1])}


def _export_slim(context_dict, label, slim_config, weights):
    context = _context_from_dict(context_dict)
    from slimext import pipeline

    return pipeline.export(context.config, weights, context.path("inference", label),
                           slim_config=slim_config, overrides=context.dataset_overrides())


def _post_quantize(context_dict, slim_config, weights):
    context = _context_from_dict(context_dict)
    from slimext import pipeline

    model_dir, metrics = pipeline.post_quantize(
        context.config, weights, slim_config, context.path("inference", "residual_ptq"),
        overrides=context.dataset_overrides(), evaluate=True, quiet=True)
    stats = (metrics or {}).get("bbox", [0.0, 0.0])
    return {"model_dir": model_dir, "mAP": float(stats[0]), "mAP50": float(stats[1])}


def _context_dict(context):
    return {"dataset_dir": context.dataset_dir, "workdir": context.workdir,
            "config": context.config, "qat_epochs": context.qat_epochs,
            "batch_size": context.batch_size, "seed": context.seed,
            "artifacts": context.artifacts}


def _context_from_dict(data):
    data = dict(data)
    artifacts = data.pop("artifacts")
    context = FamilyContext(data.pop("dataset_dir"), **data)
    context.artifacts.update(artifacts)
    return context


def run_family(flags, family, dataset_dir):
    config, qat, ptq, stock = (os.path.join(demo.REPO_ROOT, p) if p else None
                               for p in FAMILIES[family])
    context = FamilyContext(dataset_dir, workdir=os.path.join(flags.workdir, family),
                            config=config, epochs=flags.epochs, qat_epochs=flags.qat_epochs,
                            batch_size=flags.batch_size, latency_runs=flags.latency_runs,
                            num_train=flags.num_train, num_val=flags.num_val)
    os.makedirs(context.workdir, exist_ok=True)
    result = {"config": os.path.relpath(config, demo.REPO_ROOT)}
    start = time.time()
    try:
        demo.train_float(context)
    except StepFailed:
        return dict(result, error="float training failed (see {})".format(
            context.path("logs", "train.log")))
    demo.evaluate_float(context)
    result["float"] = context.results["dygraph"]
    log("{}: float mAP {:.3f}".format(family, result["float"]["mAP"]))
    state = _context_dict(context)
    result["residual_qat"] = run_qat(context, "residual_qat", qat)
    if stock:
        result["paddleslim_qat"] = run_qat(context, "paddleslim_qat", stock)
    ptq_result = _step(context, "post_quant", _post_quantize, state, ptq,
                       context.artifacts["float_weights"])
    if "model_dir" in ptq_result:
        ptq_result["export"] = export_summary(ptq_result["model_dir"])
        ptq_result["int8"] = _int8(context, "residual_ptq", ptq_result["model_dir"])
    result["residual_ptq"] = ptq_result
    result["minutes"] = round((time.time() - start) / 60.0, 1)
    log("{}: done in {} min".format(family, result["minutes"]))
    return result


def _map(cell):
    if not isinstance(cell, dict):
        return "-"
    if "error" in cell:
        return "fails"
    return "{:.3f}".format(cell["mAP"]) if "mAP" in cell else "-"


def _joins(export):
    return ", ".join("{} {}".format(k, n) for k, n in export["joins"].items()) or "none"


def render_markdown(results):
    from slimext.deploy.hardware import isa_line

    lines = ["# Model-family matrix (demo set, {} px)".format(192), "",
             "Reproduce: `{}`".format(results["command"]), "",
             "Machine: {}".format(isa_line(results["machine"])), "",
             "| family | method | joins by kind | export: INT8 weights / planned, QDQ pairs "
             "| INT8 kernels | INT8 vs fake-quant (max score dev.) | mAP float / fake-quant "
             "/ INT8 | INT8 ms |",
             "|---|---|---|---|---|---|---|---|"]
    errors = []
    for family, result in results["families"].items():
        if "error" in result:
            lines.append("| {} | - | - | - | - | - | fails: {} | - |".format(
                family, result["error"]))
            continue
        for method in ("residual_qat", "paddleslim_qat", "residual_ptq"):
            row = result.get(method)
            if row is None:
                continue
            if "error" in row and "int8" not in row:
                lines.append("| {} | {} | - | - | - | - | {} / fails at {} | - |".format(
                    family, method, _map(result["float"]), row.get("stage", "run")))
                errors.append("{} {}: {}".format(family, method, row["error"]))
                continue
            export = row.get("export")
            int8 = row.get("int8", {})
            agreement = row.get("agreement", {})
            fake_quant = row.get("fake_quant", row)
            if "error" in int8:
                errors.append("{} {} INT8: {}".format(family, method, int8["error"]))
            dev = agreement.get("max") if isinstance(agreement, dict) else None
            lines.append("| {} | {} | {} | {} | {} | {} | {} / {} / {} | {} |".format(
                family, method, _joins(export) if export else "-",
                "{} / {}, {}".format(export["int8_weights"], export["planned_layers"],
                                     export["qdq_pairs"]) if export else "-",
                int8.get("int8_kernels", "fails" if "error" in int8 else "-").replace(
                    "INT8 kernels: ", "").split(",")[0],
                "-" if dev is None else "{:.3f}".format(dev),
                _map(result["float"]), _map(fake_quant), _map(int8),
                "{:.1f}".format(int8["latency_ms"]) if "latency_ms" in int8 else "-"))
    if errors:
        lines += ["", "Failures:", ""] + ["- {}".format(e) for e in errors]
    return "\n".join(lines) + "\n"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="bench_output/model_families")
    parser.add_argument("--only", nargs="+", choices=list(FAMILIES))
    parser.add_argument("--epochs", type=int, default=6, help="float epochs per family")
    parser.add_argument("--qat_epochs", type=int, default=1)
    parser.add_argument("--num_train", type=int, default=128)
    parser.add_argument("--num_val", type=int, default=24)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--latency_runs", type=int, default=10)
    parser.add_argument("--results_dir", default=RESULTS_DIR)
    return parser


def main(argv=None):
    import slimext

    slimext.register_with_ppdet()
    flags = build_parser().parse_args(argv)
    flags.workdir = os.path.abspath(flags.workdir)
    from slimext.deploy.hardware import describe_machine

    results = {"command": " ".join([REPRODUCE] + (argv if argv is not None else sys.argv[1:])),
               "date": time.strftime("%Y-%m-%d"), "machine": describe_machine(),
               "settings": {k: getattr(flags, k) for k in ("epochs", "qat_epochs", "num_train",
                                                           "num_val", "batch_size")},
               "families": collections.OrderedDict()}
    data = demo.DemoContext(workdir=flags.workdir, num_train=flags.num_train,
                            num_val=flags.num_val)
    os.makedirs(flags.workdir, exist_ok=True)
    demo.make_dataset(data)
    json_path = os.path.join(flags.results_dir, "model_families.json")
    for family in flags.only or FAMILIES:
        results["families"][family] = run_family(flags, family, data.dataset_dir)
        # Written after every family: a long run that stops keeps what it measured.
        atomic_write_json(json_path, results, indent=1)
        atomic_write_text(os.path.join(flags.results_dir, "model_families.md"),
                          render_markdown(results))
    print(render_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
