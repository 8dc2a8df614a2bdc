"""Paddle Inference predictor for a detector exported by ppdet (tools/export_model.py).

    predictor = DetectorPredictor("output_inference/picodet_xs_192_demo_lcnet", "onednn")
    result = predictor.predict(load_image("a.png"))   # Detections: boxes [N, 6], labels

Boxes are rows of (class, score, x1, y1, x2, y2) in original image pixels. `create_detector`
picks the runtime (Paddle Inference or OpenVINO) for the same export. An INT8 predictor
proves it runs INT8 kernels (`int8_report`) or refuses to be built.
"""
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from slimext.compat.inference import check_program_readable, use_int8_capable_pipeline
from slimext.deploy.int8_kernels import (Int8NotUsedError, confirm_int8, explain_fp32_convs,
                                         paddle_int8_report)
from slimext.deploy.native_log import capture_native_stderr
from slimext.deploy.preprocess import Preprocess, read_infer_cfg

MODEL_FILES = ("model.pdmodel", "model.pdiparams", "infer_cfg.yml")


def _plain_cpu(config):
    config.disable_mkldnn()


def _onednn_fp32(config):
    config.enable_mkldnn()


def _onednn_int8(config):
    # The INT8 passes read the scales of a QDQ (QAT-exported) program; a float export
    # carries none and stays float.
    config.enable_mkldnn()
    config.enable_mkldnn_int8()


# How each precision configures Paddle Inference on CPU.
PRECISIONS = {"fp32": _plain_cpu, "onednn": _onednn_fp32, "int8": _onednn_int8}


class PredictorError(RuntimeError):
    """A runtime could not build or run a predictor for an export; the message names the
    export, the runtime's own reason (one line) and what to try."""


def native_reason(error):
    """The one line of a runtime's error that says what went wrong.

    Paddle's messages put the reason on a line like "(Fatal) Could not find ..." among
    C++ traceback and hint lines.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reasons = [line for line in lines if line.startswith("(") and ")" in line[:24]]
    text = reasons[-1] if reasons else (lines[-1] if lines else "")
    return "{}: {}".format(type(error).__name__, text) if text else type(error).__name__


# What to try when a runtime refuses an export, by the precision asked for.
FAILURE_HINTS = {
    "int8": "its INT8 passes refused the program: re-export it with tools/export_model.py "
            "--slim_config or tools/post_quant.py (their validator names the op and the "
            "fix), --verbose shows the pass log, --precision onednn runs it in fp32",
}
DEFAULT_HINT = "check that the folder is one tools/export_model.py output; --verbose shows " \
               "the runtime's log"


@contextmanager
def runtime_failures(runtime, step, model_dir, precision):
    """Turn any error the runtime raises while it `step`s (builds, runs) into one
    PredictorError line; errors slimext raises itself pass through unchanged."""
    try:
        yield
    except (PredictorError, Int8NotUsedError, FileNotFoundError, ImportError):
        raise
    except Exception as error:
        raise PredictorError("{} ({}) could not {} a predictor for {}: {}; {}".format(
            runtime, precision, step, model_dir, native_reason(error),
            FAILURE_HINTS.get(precision, DEFAULT_HINT))) from error


@dataclass
class Detections:
    boxes: np.ndarray          # [N, 6]: class, score, x1, y1, x2, y2
    labels: list               # class names, index = class id

    def above(self, threshold):
        return Detections(self.boxes[self.boxes[:, 1] >= threshold], self.labels)


def check_model_dir(model_dir):
    """Raise FileNotFoundError naming the missing file of an export folder."""
    if not os.path.isdir(model_dir):
        raise FileNotFoundError("model directory {!r} does not exist (export one with "
                                "tools/export_model.py)".format(model_dir))
    for name in MODEL_FILES:
        if not os.path.isfile(os.path.join(model_dir, name)):
            raise FileNotFoundError("{!r} has no {} (is it a tools/export_model.py output "
                                    "folder?)".format(model_dir, name))


def create_config(model_dir, precision="fp32", cpu_threads=2):
    from paddle import inference

    if precision not in PRECISIONS:
        raise ValueError("precision {!r} unknown; choose one of {}".format(
            precision, ", ".join(PRECISIONS)))
    config = inference.Config(os.path.join(model_dir, "model.pdmodel"),
                              os.path.join(model_dir, "model.pdiparams"))
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(cpu_threads)
    config.switch_ir_optim(True)
    config.enable_memory_optim()
    config.disable_glog_info()
    PRECISIONS[precision](config)
    return use_int8_capable_pipeline(config)


class ExportedDetector:
    """What every runtime shares: the export's infer_cfg, its preprocessing, box decoding.

    A runtime subclass sets `runtime`, `precision` and implements run_raw(inputs).
    """
    runtime = None

    def __init__(self, model_dir, precision):
        check_model_dir(model_dir)
        self.infer_cfg = read_infer_cfg(model_dir)
        self.model_dir = model_dir
        self.precision = precision
        self.labels = list(self.infer_cfg.get("label_list", []))
        self.preprocess = Preprocess(self.infer_cfg["Preprocess"])
        self.int8_report = None   # set by INT8 runs: which kernels ran INT8

    def run_raw(self, inputs):
        raise NotImplementedError

    def run(self, inputs):
        """Boxes [N, 6] (class, score, x1, y1, x2, y2) and box counts per image."""
        outputs = self.run_raw(inputs)
        if len(outputs) < 2:
            raise ValueError("{} gives raw head outputs (exported with export.benchmark=True "
                             "or without NMS); it has no boxes to return".format(self.model_dir))
        boxes, counts = outputs[0], outputs[1]
        return boxes.reshape(-1, 6), counts.reshape(-1)

    def predict(self, image):
        """One RGB uint8 image -> Detections in that image's pixels."""
        boxes, counts = self.run(self.preprocess(image))
        boxes = boxes[:int(counts[0])]
        # Without detections Paddle's NMS pads one row of class -1.
        return Detections(boxes[boxes[:, 0] >= 0], self.labels)


class DetectorPredictor(ExportedDetector):
    """Paddle Inference on CPU. verbose=True shows the analysis passes' log on stderr."""
    runtime = "paddle"

    def __init__(self, model_dir, precision="fp32", cpu_threads=2, verbose=False):
        from paddle import inference

        super().__init__(model_dir, precision)
        config = create_config(model_dir, precision, cpu_threads)
        with tempfile.TemporaryDirectory(prefix="slimext_optim_") as optim_dir:
            if precision == "int8":
                # The optimized program is the evidence of which kernels run INT8.
                config.set_optim_cache_dir(optim_dir)
                config.enable_save_optim_model(True)
            with runtime_failures("Paddle Inference", "build", model_dir, precision):
                check_program_readable(os.path.join(model_dir, "model.pdmodel"))
                with capture_native_stderr(echo=verbose) as log:
                    self.predictor = inference.create_predictor(config)
            self.pass_log = log.text
            if precision == "int8":
                optimized = os.path.join(optim_dir, "_optimized.pdmodel")
                if not os.path.isfile(optimized):
                    raise Int8NotUsedError(
                        "Paddle Inference wrote no optimized program for {}, so its INT8 "
                        "kernels cannot be confirmed (an old-IR .pdmodel export is needed)"
                        .format(model_dir))
                self.int8_report = explain_fp32_convs(paddle_int8_report(optimized),
                                                      model_dir)
        if precision == "int8":
            confirm_int8(self.int8_report, model_dir)
        self.input_names = self.predictor.get_input_names()
        self.output_names = self.predictor.get_output_names()

    def run_raw(self, inputs):
        """Feed the inputs the program declares; return every output as numpy, in order."""
        with runtime_failures("Paddle Inference", "run", self.model_dir, self.precision):
            for name in self.input_names:
                handle = self.predictor.get_input_handle(name)
                array = np.ascontiguousarray(inputs[name])
                handle.reshape(array.shape)
                handle.copy_from_cpu(array)
            self.predictor.run()
            return [self.predictor.get_output_handle(name).copy_to_cpu()
                    for name in self.output_names]
