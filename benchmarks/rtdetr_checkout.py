"""RT-DETR-R18 from a PaddleDetection checkout (develop) through slimext, on random weights:
plan, quantizer scales from demo images, validated INT8 export, oneDNN INT8 against the
fake-quant model.

RT-DETR is not in the installed paddledet 2.6.0; a checkout has it. Every step runs in a
fresh process started from the checkout's root, so `import ppdet` is the checkout's own
(run `make checkout-deps PPDET=...` once for its requirements):

    cd PaddleDetection && PYTHONPATH=/path/to/slimext python -m benchmarks.rtdetr_checkout \
        --workdir /tmp/rtdetr_work [--size 320] [--images 4]

The model config is written into the workdir: the checkout's
configs/rtdetr/rtdetr_r18vd_6x_coco.yml at a fixed --size (RT-DETR precomputes its anchors
and the encoder's position embedding for `eval_size`), the demo data set, batch norm
instead of sync_bn. Weights are random: zero-initialised head layers get small random
values (a zero weight has no INT8 scale), batch-norm statistics come from one forward on a
demo image, as in tests/test_model_families.py. Writes WORKDIR/rtdetr_report.json.
"""
import argparse
import glob
import json
import os
import sys

import numpy as np

from slimext.fileio import atomic_path, atomic_write_json, atomic_write_text
from slimext.latency_exports import randomize_zero_filters, set_batch_norm_statistics

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKOUT_CONFIG = "configs/rtdetr/rtdetr_r18vd_6x_coco.yml"
SLIM_CONFIG = os.path.join(REPO_ROOT, "configs/slim/residual_qat/rtdetr_r18vd_demo_residual_qat.yml")
DEMO_DATASET = os.path.join(REPO_ROOT, "configs/datasets/demo_detection.yml")
TOP_K = 50

CONFIG_TEMPLATE = """# RT-DETR-R18 of {checkout} at {size}x{size} on the demo set (written by
# benchmarks/rtdetr_checkout.py).
_BASE_: [
  '{base}',
  '{dataset}',
]
pretrain_weights: ''
use_gpu: false
norm_type: bn
eval_size: [{size}, {size}]
TrainDataset: {{dataset_dir: {data}}}
EvalDataset: {{dataset_dir: {data}}}
TestDataset: {{dataset_dir: {data}}}
DETRPostProcess: {{num_top_queries: 100}}
EvalReader:
  sample_transforms: &transforms
    - Decode: {{}}
    - Resize: {{target_size: [{size}, {size}], keep_ratio: False, interp: 2}}
    - NormalizeImage: {{mean: [0., 0., 0.], std: [1., 1., 1.], norm_type: none}}
    - Permute: {{}}
  batch_size: 1
TestReader:
  inputs_def:
    image_shape: [3, {size}, {size}]
  sample_transforms: *transforms
  batch_size: 1
"""


def write_config(workdir, checkout, size, data_dir):
    path = os.path.join(workdir, "rtdetr_r18vd_{}_demo.yml".format(size))
    text = CONFIG_TEMPLATE.format(checkout=checkout, size=size, data=data_dir,
                                  base=os.path.join(checkout, CHECKOUT_CONFIG),
                                  dataset=DEMO_DATASET)
    atomic_write_text(path, text)
    return path


def save_detections(path, per_image):
    """[N_i, 6] detections per image, in image order, as one .npz."""
    with atomic_path(path) as staging:
        with open(staging, "wb") as f:
            np.savez(f, *per_image)


def load_detections(path):
    with np.load(path) as data:
        return [data["arr_{}".format(i)] for i in range(len(data.files))]


def _preprocessed(model_dir, image_paths):
    """The predictor's own preprocessing of each image (the export's infer_cfg)."""
    import yaml

    from slimext.deploy.preprocess import Preprocess, load_image

    with open(os.path.join(model_dir, "infer_cfg.yml")) as f:
        preprocess = Preprocess(yaml.safe_load(f)["Preprocess"])
    return [preprocess(load_image(path)) for path in image_paths]


def _tensors(arrays):
    import paddle

    return {k: paddle.to_tensor(v) for k, v in arrays.items()}


def float_weights(workdir, config, image_path, size):
    """Random weights with usable statistics, saved as WORKDIR/float.pdparams."""
    import paddle
    from ppdet.core.workspace import create, load_config

    import slimext
    from slimext.deploy.preprocess import Preprocess, load_image

    slimext.register_with_ppdet()
    cfg = load_config(config)
    paddle.seed(0)
    model = create(cfg.architecture)
    model.eval()
    randomize_zero_filters(model)
    preprocess = Preprocess([{"type": "Resize", "target_size": [size, size], "keep_ratio": False,
                              "interp": 2},
                             {"type": "NormalizeImage", "mean": [0., 0., 0.], "std": [1., 1., 1.],
                              "norm_type": "none"},
                             {"type": "Permute"}])
    inputs = preprocess(load_image(image_path))
    set_batch_norm_statistics(model, _tensors(inputs))
    prefix = os.path.join(workdir, "float")
    paddle.save(model.state_dict(), prefix + ".pdparams")
    return {"weights": prefix, "ppdet": os.path.dirname(sys.modules["ppdet"].__file__),
            "image_mean": float(np.mean(inputs["image"]))}


def _is_quantizer(layer):
    from slimext.quant.apply import JoinFakeQuant

    module = type(layer).__module__
    return isinstance(layer, JoinFakeQuant) or module.startswith(("paddle.nn.quant",
                                                                  "paddle.quantization"))


def calibrate_and_run(workdir, config, slim_config, weights, float_dir, calib_images,
                      eval_images):
    """The slim model on the float weights, moving-average scales from calib_images, then
    its fake-quant detections on eval_images; saves the checkpoint and the detections."""
    import paddle

    from slimext import pipeline
    from slimext.slim.build import build_slim_model

    cfg, opt = pipeline._load(config, {"weights": weights}, slim_config, mode="test")
    settings = pipeline._slim_settings(slim_config, opt, "benchmarks.rtdetr_checkout")
    cfg = build_slim_model(cfg, slim_config, mode="test", overrides=opt, settings=settings,
                           check_coverage=True, print_plan=True)
    model = cfg["model"]
    slim = cfg["slim"]
    model.eval()
    quantizers = [layer for layer in model.sublayers() if _is_quantizer(layer)]
    for layer in quantizers:
        layer.train()
    with paddle.no_grad():
        for inputs in _preprocessed(float_dir, calib_images):
            model(_tensors(inputs))
    for layer in quantizers:
        layer.eval()
    prefix = os.path.join(workdir, "calibrated")
    paddle.save(model.state_dict(), prefix + ".pdparams")
    # The export gives every quantizer reading one tensor one scale, in the program and in
    # this model (slimext.quant.tensor_scales): only after it does the fake-quant model
    # compute what its export computes. (The export compared is pipeline.export's, from
    # the checkpoint above: the same program.)
    size = cfg.TestReader["inputs_def"]["image_shape"][-1]
    spec = [{"image": paddle.static.InputSpec([1, 3, size, size], name="image"),
             "im_shape": paddle.static.InputSpec([1, 2], name="im_shape"),
             "scale_factor": paddle.static.InputSpec([1, 2], name="scale_factor")}]
    inprocess = slim.save_quantized_model(model, os.path.join(workdir, "inprocess", "model"),
                                          input_spec=spec)
    model.eval()
    outputs = []
    with paddle.no_grad():
        for inputs in _preprocessed(float_dir, eval_images):
            out = model(_tensors(inputs))
            outputs.append(out["bbox"].numpy()[:int(out["bbox_num"].numpy()[0])])
    save_detections(os.path.join(workdir, "fake_quant.npz"), outputs)
    plan = slim.plan
    kinds = {}
    for join in plan.active_joins():
        kinds[join.kind] = kinds.get(join.kind, 0) + 1
    return {"weights": prefix, "quantizers": len(quantizers), "joins_by_kind": kinds,
            "summary": plan.summary(),
            "planned_float": [layer.path for layer in plan.layers if layer.skipped],
            "quantized_layers": len(plan.quantized_layers()),
            "tensor_scales_unified": len(inprocess["tensor_scales_unified"]),
            "uncovered": [str(u) for u in (slim.core.uncovered or [])]}


def run_predictor(model_dir, precision, image_paths, out_path):
    from slimext.deploy.predictor import DetectorPredictor

    predictor = DetectorPredictor(model_dir, precision, cpu_threads=2)
    outputs = []
    for inputs in _preprocessed(model_dir, image_paths):
        boxes, counts = predictor.run(inputs)
        outputs.append(boxes[:int(counts[0])])
    save_detections(out_path, outputs)
    report = predictor.int8_report
    return report.as_dict() if report else None


def _iou(box, boxes):
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def box_agreement(reference, boxes, top_k=TOP_K):
    """Over the top_k reference detections: the IoU of each with the best-matching box of
    the same class among the other run's top_k; (median, minimum)."""
    reference = reference[np.argsort(-reference[:, 1])][:top_k]
    boxes = boxes[np.argsort(-boxes[:, 1])][:top_k]
    ious = []
    for row in reference:
        same = boxes[boxes[:, 0] == row[0]]
        ious.append(float(_iou(row[2:], same[:, 2:]).max()) if len(same) else 0.0)
    return float(np.median(ious)), float(np.min(ious))


def compare(reference_path, measured_path):
    from slimext.analysis.detection_agreement import score_deviation

    reference, measured = load_detections(reference_path), load_detections(measured_path)
    rows = []
    for ref, got in zip(reference, measured):
        deviation, count = score_deviation(ref, got, TOP_K)
        median_iou, min_iou = box_agreement(ref, got)
        rows.append({"score_deviation": deviation, "compared": count,
                     "top_score_fake_quant": float(ref[:, 1].max()),
                     "top_score_measured": float(got[:, 1].max()),
                     "box_iou_median": median_iou, "box_iou_min": min_iou})
    return rows


def main(argv=None):
    from slimext.data.demo import generate
    from slimext.isolation import run_in_fresh_process

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--checkout", default=os.getcwd(),
                        help="PaddleDetection checkout root (default: the current folder)")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--images", type=int, default=4, help="calibration images")
    parser.add_argument("--slim_config", default=SLIM_CONFIG)
    parser.add_argument("--keep_float", action="store_true",
                        help="reuse the workdir's float weights and float export")
    args = parser.parse_args(argv)
    checkout = os.path.abspath(args.checkout)
    if not os.path.isfile(os.path.join(checkout, CHECKOUT_CONFIG)):
        parser.error("{} has no {}: give a PaddleDetection checkout with RT-DETR "
                     "(develop or v2.7+)".format(checkout, CHECKOUT_CONFIG))
    workdir = os.path.abspath(args.workdir)
    os.makedirs(os.path.join(workdir, "logs"), exist_ok=True)
    os.chdir(checkout)   # every step imports the checkout's ppdet
    data_dir = os.path.join(workdir, "demo")
    if not os.path.isdir(os.path.join(data_dir, "val")):
        generate(data_dir, num_train=8, num_val=8, seed=0)
    images = sorted(glob.glob(os.path.join(data_dir, "val", "*.png")))
    calib, evaluation = images[:args.images], images[-2:]
    config = write_config(workdir, checkout, args.size, data_dir)

    def step(name, func, *a, **k):
        print("[rtdetr] {} ...".format(name), flush=True)
        return run_in_fresh_process(func, *a, log_path=os.path.join(workdir, "logs",
                                                                     name + ".log"), **k)

    from slimext import pipeline

    report = {"config": config}
    slim_config = os.path.abspath(args.slim_config)
    float_dir = os.path.join(workdir, "float", os.path.splitext(os.path.basename(config))[0])
    weights = os.path.join(workdir, "float")
    if not (args.keep_float and os.path.isdir(float_dir)):
        report["float_weights"] = step("float_weights", float_weights, workdir, config,
                                       images[0], args.size)
        float_dir = step("export_float", pipeline.export, config, weights,
                         os.path.join(workdir, "float"))
    report["plan"] = step("calibrate", calibrate_and_run, workdir, config, slim_config,
                          weights, float_dir, calib, evaluation)
    int8_dir = step("export_int8", pipeline.export, config, report["plan"]["weights"],
                    os.path.join(workdir, "int8"), slim_config=slim_config)
    with open(os.path.join(int8_dir, "quant_plan.json")) as f:
        export_report = json.load(f)["report"]
    report["export"] = {k: export_report[k] for k in ("qdq_pairs", "int8_weights",
                                                      "planned_layers", "join_quantizers",
                                                      "uncovered_joins")}
    report["int8"] = step("int8_predictor", run_predictor, int8_dir, "int8", evaluation,
                          os.path.join(workdir, "int8.npz"))
    report["float_onednn"] = step("float_predictor", run_predictor, float_dir, "onednn",
                                  evaluation, os.path.join(workdir, "float_onednn.npz"))
    report["int8_vs_fake_quant"] = compare(os.path.join(workdir, "fake_quant.npz"),
                                           os.path.join(workdir, "int8.npz"))
    # For scale: how far 8 bits move the float model (oneDNN fp32) on the same images.
    report["fake_quant_vs_float"] = compare(os.path.join(workdir, "float_onednn.npz"),
                                            os.path.join(workdir, "fake_quant.npz"))
    path = os.path.join(workdir, "rtdetr_report.json")
    atomic_write_json(path, report, indent=1)
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
