"""Latency of PicoDet-S exports (float, ResidualQAT INT8, PaddleSlim QAT INT8) on CPU.

There is no COCO and no pretrained PicoDet-S here, so accuracy is out of scope: the weights
are the config's random initialisation and the quantizer scales are calibrated on demo
images (the float model's activations), which is all the INT8 runtime needs to run the
real program. The exports leave out box decoding and NMS (`export.benchmark=True`, the way
PicoDet's published latencies are taken): with random weights every anchor passes the score
threshold and NMS over 80 classes would be all that is measured. Each function is one step
for benchmarks/qat_compare.py, run in its own process.
"""
import glob
import os

import yaml

CONFIG = "configs/picodet/picodet_s_416_coco_lcnet.yml"
EXPORT_OVERRIDES = {"export.benchmark": True}   # raw head outputs: no decoding, no NMS
METHODS = {
    "residual_qat": "configs/slim/residual_qat/picodet_s_416_residual_qat.yml",
    "paddleslim_qat": "configs/slim/quant/picodet_s_416_lcnet_qat.yml",
}


def save_random_weights(workdir, config):
    """The config's freshly initialised model as a checkpoint (the 'float weights')."""
    import paddle
    from ppdet.core.workspace import create, load_config

    paddle.seed(0)
    cfg = load_config(config)
    model = create(cfg.architecture)
    os.makedirs(workdir, exist_ok=True)
    prefix = os.path.join(workdir, "float")
    paddle.save(model.state_dict(), prefix + ".pdparams")
    return prefix


def _is_quantizer(layer):
    from slimext.quant.apply import JoinFakeQuant

    module = type(layer).__module__
    return isinstance(layer, JoinFakeQuant) or module.startswith(("paddle.nn.quant",
                                                                  "paddle.quantization"))


def calibrate_quantized_weights(workdir, config, slim_config, weights, float_model_dir,
                                image_dir, num_images=8):
    """Build config + slim, run demo images through it with only the quantizers in
    training mode (their moving-average scales fill in), save that checkpoint."""
    import paddle
    from ppdet.core.workspace import load_config
    from ppdet.slim import build_slim_model

    from slimext.deploy.preprocess import Preprocess, load_image

    cfg = load_config(config)
    cfg.weights = weights
    cfg = build_slim_model(cfg, slim_config, mode="test")
    model = cfg["model"]
    model.eval()
    quantizers = [layer for layer in model.sublayers() if _is_quantizer(layer)]
    for layer in quantizers:
        layer.train()
    with open(os.path.join(float_model_dir, "infer_cfg.yml")) as f:
        preprocess = Preprocess(yaml.safe_load(f)["Preprocess"])
    with paddle.no_grad():
        for path in sorted(glob.glob(os.path.join(image_dir, "*.png")))[:num_images]:
            inputs = preprocess(load_image(path))
            model({k: paddle.to_tensor(v) for k, v in inputs.items()})
    name = os.path.splitext(os.path.basename(slim_config))[0]
    prefix = os.path.join(workdir, name)
    paddle.save(model.state_dict(), prefix + ".pdparams")
    return {"weights": prefix, "quantizers": len(quantizers)}


def measure_latency_only(model_dir, precision, image_path, cpu_threads=2, runs=50):
    from slimext.deploy.latency import measure_latency
    from slimext.deploy.predictor import DetectorPredictor
    from slimext.deploy.preprocess import load_image

    predictor = DetectorPredictor(model_dir, precision, cpu_threads)
    inputs = predictor.preprocess(load_image(image_path))
    latency = measure_latency(lambda: predictor.run_raw(inputs), runs=runs, warmup=10)
    return {"latency_ms": latency.median_ms, "precision": precision,
            "cpu_threads": cpu_threads}
