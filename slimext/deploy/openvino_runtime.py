"""OpenVINO as a second CPU runtime for the same Paddle export (an optional install).

OpenVINO reads `model.pdmodel` directly; a QDQ export's quantize/dequantize pairs become
FakeQuantize nodes that its CPU plugin runs as INT8 kernels with the exported scales.
from_onnx=True reads the export converted to ONNX instead (slimext.onnx), the file other
ONNX runtimes get.
Install it with `pip install -r requirements-openvino.txt` (or the `openvino` extra).
"""
import collections
import os

from slimext.deploy.int8_kernels import confirm_int8, openvino_int8_report
from slimext.deploy.predictor import ExportedDetector, runtime_failures

INSTALL_HINT = "pip install -r requirements-openvino.txt"


class OpenVINOMissingError(ImportError):
    """OpenVINO is not installed; the message says how to install it."""


def import_openvino():
    try:
        import openvino
    except ImportError as error:
        raise OpenVINOMissingError("OpenVINO is not installed ({}); install the optional "
                                   "runtime with `{}`".format(error, INSTALL_HINT))
    return openvino


def openvino_version():
    """The installed OpenVINO's version, or None."""
    try:
        return import_openvino().get_version()
    except OpenVINOMissingError:
        return None


class OpenVINODetector(ExportedDetector):
    """OpenVINO CPU plugin. precision 'fp32' keeps float math in f32 (OpenVINO would pick
    bf16 on CPUs that have it); 'int8' also requires INT8 kernels to have been chosen."""
    runtime = "openvino"

    def __init__(self, model_dir, precision="fp32", cpu_threads=2, verbose=False,
                 per_node_timing=False, from_onnx=False):
        if precision not in ("fp32", "int8"):
            raise ValueError("precision {!r} is not offered by openvino; choose fp32 or int8"
                             .format(precision))
        super().__init__(model_dir, precision)
        ov = import_openvino()
        core = ov.Core()
        model = _read_onnx(core, model_dir) if from_onnx else \
            core.read_model(os.path.join(model_dir, "model.pdmodel"))
        self.compiled = core.compile_model(model, "CPU", {
            "INFERENCE_NUM_THREADS": int(cpu_threads),
            "INFERENCE_PRECISION_HINT": "f32",
            "PERFORMANCE_HINT": "LATENCY",
            "PERF_COUNT": bool(per_node_timing),
        })
        self.request = self.compiled.create_infer_request()
        # The Paddle frontend drops feeds the graph never reads (e.g. im_shape).
        self.input_names = [port.get_any_name() for port in self.compiled.inputs]
        self.pass_log = ""
        self.verbose = verbose
        if precision == "int8":
            self.int8_report = openvino_int8_report(self.compiled)
            confirm_int8(self.int8_report, model_dir)

    def run_raw(self, inputs):
        """Feed the inputs the model declares; return every output as numpy, in order."""
        with runtime_failures("OpenVINO", "run", self.model_dir, self.precision):
            self.request.infer({name: inputs[name] for name in self.input_names})
            return [self.request.get_output_tensor(i).data.copy()
                    for i in range(len(self.compiled.outputs))]


def _read_onnx(core, model_dir):
    import tempfile

    import onnx

    from slimext.onnx import convert_export

    with tempfile.TemporaryDirectory(prefix="slimext_ov_onnx_") as folder:
        path = os.path.join(folder, "model.onnx")
        onnx.save(convert_export(model_dir), path)
        return core.read_model(path)   # the graph is read into memory: the file may go


def profile_nodes(model_dir, precision, runs=50, warmup=10, cpu_threads=2):
    """Where an OpenVINO CPU run spends its time: ms and nodes per run by node type and
    execution precision (the plugin's per-node counters), and the wall time per run."""
    import time

    from slimext.deploy.preprocess import bench_image

    detector = OpenVINODetector(model_dir, precision, cpu_threads, per_node_timing=True)
    inputs = detector.preprocess(bench_image(model_dir))
    for _ in range(warmup):
        detector.run_raw(inputs)
    totals = collections.defaultdict(lambda: [0, 0.0])
    wall = 0.0
    for _ in range(runs):
        start = time.perf_counter()
        detector.request.infer({name: inputs[name] for name in detector.input_names})
        wall += time.perf_counter() - start
        for node in detector.request.profiling_info:
            if node.status != node.Status.EXECUTED:
                continue
            # exec_type reads like 'jit_avx512_I8' or 'brgconv_avx512_FP32'
            data = node.exec_type.rsplit("_", 1)[-1] if node.exec_type else ""
            entry = totals[(node.node_type, data)]
            entry[0] += 1
            entry[1] += node.real_time.total_seconds() * 1000.0
    rows = sorted(({"node": node, "data": data, "count": count / runs, "ms": ms / runs}
                   for (node, data), (count, ms) in totals.items()), key=lambda r: -r["ms"])
    return {"model_dir": model_dir, "precision": precision, "runs": runs,
            "wall_ms": wall * 1000.0 / runs, "node_ms": sum(r["ms"] for r in rows),
            "nodes": rows}


def format_node_profile(profile, top=10):
    lines = ["{} (OpenVINO {}): {:.1f} ms per run wall, {:.1f} ms in nodes".format(
        os.path.basename(os.path.normpath(profile["model_dir"])), profile["precision"],
        profile["wall_ms"], profile["node_ms"]), "",
        "| node type | data | nodes/run | ms/run |", "|---|---|---|---|"]
    for row in profile["nodes"][:top]:
        lines.append("| {} | {} | {:.0f} | {:.2f} |".format(row["node"], row["data"],
                                                          row["count"], row["ms"]))
    return "\n".join(lines)
