"""Accuracy and speed of one exported model at one precision, as a plain dict."""
import os

from slimext.deploy.evaluate import evaluate_predictor
from slimext.deploy.latency import measure_latency
from slimext.deploy.predictor import DetectorPredictor
from slimext.deploy.preprocess import load_image


def measure_predictor(model_dir, precision, dataset_dir, cpu_threads=2, latency_runs=25,
                      warmup=5):
    """mAP on dataset_dir's COCO val split and median latency on its first image.

    Run it in its own process when comparing precisions: oneDNN caches and thread pools
    of an earlier predictor would otherwise colour the timing.
    """
    predictor = DetectorPredictor(model_dir, precision, cpu_threads)
    anno_file = os.path.join(dataset_dir, "annotations", "instances_val.json")
    image_dir = os.path.join(dataset_dir, "val")
    stats = evaluate_predictor(predictor, anno_file, image_dir)
    first = sorted(os.listdir(image_dir))[0]
    inputs = predictor.preprocess(load_image(os.path.join(image_dir, first)))
    latency = measure_latency(lambda: predictor.run(inputs), runs=latency_runs,
                              warmup=min(warmup, latency_runs))
    result = {"model_dir": model_dir, "precision": precision, "mAP": stats[0],
              "mAP50": stats[1], "latency_ms": latency.median_ms, "latency_runs": latency.runs,
              "cpu_threads": cpu_threads}
    if predictor.int8_report is not None:   # an INT8 predictor proved its kernels
        result["int8_kernels"] = predictor.int8_report.line()
    return result
