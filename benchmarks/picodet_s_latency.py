"""Latency of PicoDet-S exports (float, ResidualQAT INT8, PaddleSlim QAT INT8) on CPU.

Random weights and scales calibrated on demo images (slimext.latency_exports says why that
is enough for latency): accuracy is out of scope. Each function is one step for
benchmarks/qat_compare.py, run in its own process.
"""
from slimext.latency_exports import (EXPORT_OVERRIDES, calibrate_quantized_weights,  # noqa: F401
                                     save_random_weights)

CONFIG = "configs/picodet/picodet_s_416_coco_lcnet.yml"
METHODS = {
    "residual_qat": "configs/slim/residual_qat/picodet_s_416_residual_qat.yml",
    "paddleslim_qat": "configs/slim/quant/picodet_s_416_lcnet_qat.yml",
}


def measure_latency_only(model_dir, precision, image_path, cpu_threads=2, runs=50):
    from slimext.deploy.latency import measure_latency
    from slimext.deploy.predictor import DetectorPredictor
    from slimext.deploy.preprocess import load_image

    predictor = DetectorPredictor(model_dir, precision, cpu_threads)
    inputs = predictor.preprocess(load_image(image_path))
    latency = measure_latency(lambda: predictor.run_raw(inputs), runs=runs, warmup=10)
    return {"latency_ms": latency.median_ms, "precision": precision,
            "cpu_threads": cpu_threads}
