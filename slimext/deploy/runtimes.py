"""One entry point for every runtime an export can run on (Paddle Inference, OpenVINO,
ONNX Runtime).

    detector = create_detector("output_inference/model", runtime="openvino", precision="int8")
    detector = create_detector("output_inference/model", runtime="onnxruntime")
"""
from slimext.deploy.onnxruntime_runtime import OnnxRuntimeDetector
from slimext.deploy.openvino_runtime import OpenVINODetector
from slimext.deploy.predictor import PRECISIONS, DetectorPredictor, runtime_failures

# Which precisions each runtime offers for an export.
RUNTIME_PRECISIONS = {"paddle": tuple(PRECISIONS), "openvino": ("fp32", "int8"),
                      "onnxruntime": ("fp32", "int8")}


def create_detector(model_dir, runtime="paddle", precision="fp32", cpu_threads=2,
                    verbose=False, from_onnx=False):
    """A predictor for the export on the named runtime ('paddle', 'openvino' or
    'onnxruntime'). from_onnx=True makes OpenVINO read the export converted to ONNX instead
    of the .pdmodel (ONNX Runtime always does).

    Raises FileNotFoundError (a missing file), ValueError (a bad argument), ImportError
    (a runtime not installed), Int8NotUsedError (INT8 asked, no INT8 kernel ran) and
    PredictorError for anything the runtime itself refuses (one line, with what to try);
    runs that fail raise PredictorError too.
    """
    if runtime not in RUNTIME_PRECISIONS:
        raise ValueError("runtime {!r} unknown; choose one of {}".format(
            runtime, ", ".join(RUNTIME_PRECISIONS)))
    if precision not in RUNTIME_PRECISIONS[runtime]:
        raise ValueError("precision {!r} is not offered by {}; choose one of {}".format(
            precision, runtime, ", ".join(RUNTIME_PRECISIONS[runtime])))
    if from_onnx and runtime == "paddle":
        raise ValueError("from_onnx applies to openvino (onnxruntime always reads ONNX); "
                         "Paddle Inference runs the .pdmodel")
    if runtime == "openvino":
        with runtime_failures("OpenVINO", "build", model_dir, precision):
            return OpenVINODetector(model_dir, precision, cpu_threads, verbose,
                                    from_onnx=from_onnx)
    if runtime == "onnxruntime":
        with runtime_failures("ONNX Runtime", "build", model_dir, precision):
            return OnnxRuntimeDetector(model_dir, precision, cpu_threads, verbose)
    return DetectorPredictor(model_dir, precision, cpu_threads, verbose)


def confirm_int8_kernels(model_dir, runtime="paddle", cpu_threads=2):
    """Build an INT8 predictor for the export and return its Int8KernelReport.

    Raises Int8NotUsedError (with the reason and the fix) when no convolution ran INT8.
    """
    return create_detector(model_dir, runtime, "int8", cpu_threads).int8_report
