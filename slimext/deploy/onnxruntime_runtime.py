"""ONNX Runtime (CPU) as a runtime for the same Paddle export (an optional install).

The export folder stays the one source: the detector converts the validated `model.pdmodel`
to ONNX in memory when it is built (slimext.onnx, about a second for PicoDet), so it can never
run an ONNX file that is older than the program beside it, or one written with --no_nms.
tools/export_onnx.py writes the same ONNX to a file for other ONNX runtimes.

precision 'int8' runs the QDQ graph on ONNX Runtime's integer kernels: it fuses
DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv itself, and the convs whose
output goes on in float are given to ConvInteger (slimext.onnx.integer_convs); the graph
ONNX Runtime optimized is the evidence (`int8_report`). Install with
`pip install -r requirements-onnx.txt` (or the `onnx` extra).
"""
import os
import tempfile

from slimext.deploy.int8_kernels import (confirm_int8, explain_fp32_convs,
                                        onnxruntime_int8_report)
from slimext.deploy.predictor import ExportedDetector, runtime_failures

INSTALL_HINT = "pip install -r requirements-onnx.txt"


class OnnxRuntimeMissingError(ImportError):
    """onnx or onnxruntime is not installed; the message says how to install them."""


def import_onnxruntime():
    try:
        import onnx  # noqa: F401  (the converter builds the graph with it)
        import onnxruntime
    except ImportError as error:
        raise OnnxRuntimeMissingError("ONNX Runtime is not installed ({}); install the "
                                      "optional runtime with `{}`".format(error, INSTALL_HINT))
    return onnxruntime


def onnxruntime_version():
    """The installed ONNX Runtime's version, or None."""
    try:
        return import_onnxruntime().__version__
    except OnnxRuntimeMissingError:
        return None


class OnnxRuntimeDetector(ExportedDetector):
    """ONNX Runtime's CPU execution provider on the export converted to ONNX."""
    runtime = "onnxruntime"

    def __init__(self, model_dir, precision="fp32", cpu_threads=2, verbose=False):
        if precision not in ("fp32", "int8"):
            raise ValueError("precision {!r} is not offered by onnxruntime; choose fp32 or "
                             "int8".format(precision))
        super().__init__(model_dir, precision)
        ort = import_onnxruntime()
        from slimext.onnx import convert_export
        from slimext.onnx.integer_convs import lower_float_output_convs

        # Batch norms folded into the convs: ONNX Runtime folds them itself only into
        # constant filters, not into filters behind DequantizeLinear.
        model = convert_export(model_dir, fold_into_convs=True)
        if precision == "int8":
            lower_float_output_convs(model)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(cpu_threads)
        options.inter_op_num_threads = 1
        # Idle worker threads would spin after each run, taking the CPU from whatever runs
        # next (another runtime timed in the same rounds, or the application).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 1 if verbose else 3
        self.pass_log = ""
        with tempfile.TemporaryDirectory(prefix="slimext_ort_") as folder:
            optimized = os.path.join(folder, "optimized.onnx")
            if precision == "int8":
                # The optimized graph is the evidence of which kernels run INT8.
                options.optimized_model_filepath = optimized
            with runtime_failures("ONNX Runtime", "build", model_dir, precision):
                self.session = ort.InferenceSession(model.SerializeToString(), options,
                                                    providers=["CPUExecutionProvider"])
            if precision == "int8":
                import onnx

                self.int8_report = explain_fp32_convs(
                    onnxruntime_int8_report(onnx.load(optimized), model), model_dir)
        if precision == "int8":
            confirm_int8(self.int8_report, model_dir)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run_raw(self, inputs):
        """Feed the inputs the graph declares; return every output as numpy, in order."""
        with runtime_failures("ONNX Runtime", "run", self.model_dir, self.precision):
            return self.session.run(None, {name: inputs[name] for name in self.input_names})
