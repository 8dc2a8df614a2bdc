"""A slimext export (float, ResidualQAT or ResidualPTQ) as one ONNX file.

    model = convert_export("output_inference/picodet_demo_residual_qat")   # onnx.ModelProto
    export_onnx("output_inference/picodet_demo_residual_qat", "picodet_int8.onnx")

Steps: read the validated old-IR program -> (for ONNX Runtime only: fold batch norms and
bias adds into the convs) -> one converter per op (every op is checked first: an op without
a converter stops the export naming it) -> onnx.checker -> written to a temporary name and
renamed. The file keeps the program's own ops, so executed node by node it is the program's
arithmetic; TensorRT and OpenVINO fold conv + batch norm behind Q/DQ themselves.
"""
import os

from slimext.onnx import nms as _nms   # noqa: F401  (registers multiclass_nms3)
from slimext.onnx import qdq as _qdq   # noqa: F401  (registers quantize/dequantize_linear)
from slimext.onnx.fold_batch_norm import fold_batch_norms
from slimext.onnx.graph_builder import GraphBuilder, UnsupportedOpError
from slimext.onnx.op_converters import CONVERTERS
from slimext.onnx.program_reader import read_program

# 13: per-channel QuantizeLinear/DequantizeLinear (axis), what TensorRT's explicit
# quantization reads; ONNX Runtime, OpenVINO and TensorRT 8.6+ read 13 to 19.
DEFAULT_OPSET = 13
OPSET_RANGE = (13, 19)
NMS_TYPES = ("multiclass_nms3", "multiclass_nms2", "multiclass_nms")
PRODUCER = "slimext"


def check_opset(opset_version):
    if not OPSET_RANGE[0] <= int(opset_version) <= OPSET_RANGE[1]:
        raise ValueError("opset_version {} is not offered: choose {} to {} (13 is the "
                         "lowest with per-channel QuantizeLinear)".format(opset_version,
                                                                           *OPSET_RANGE))
    return int(opset_version)


def unsupported_ops(program):
    """Op types of the program that have no converter, in program order."""
    missing = []
    for op in program.ops:
        if op.type not in CONVERTERS and op.type not in missing:
            missing.append(op.type)
    return missing


def _drop_nms(program):
    """Outputs become the boxes and scores NMS would read (PaddleDetection's ONNX recipe)."""
    nms_ops = [op for op in program.ops if op.type in NMS_TYPES]
    if not nms_ops:
        return program
    fetches, dropped = [], set()
    for op in nms_ops:
        fetches.extend(_nms.nms_inputs(op))
    kept = []
    for op in program.ops:
        # NMS and what reads its results (Paddle 2.6's save adds a scale op per output)
        reads = {n for names in op.inputs.values() for n in names}
        if op.type in NMS_TYPES or reads & dropped:
            dropped.update(n for names in op.outputs.values() for n in names)
        else:
            kept.append(op)
    program.ops = kept
    program.fetches = fetches
    return program


def convert_program(program, opset_version=DEFAULT_OPSET, nms=True, graph_name="slimext",
                    fold_into_convs=False):
    """An ExportedProgram as an onnx.ModelProto (checked). fold_into_convs: batch norms and
    bias adds become the convs' filters and biases (see fold_batch_norm: what ONNX Runtime
    needs to run QDQ convs on integer kernels)."""
    import onnx
    from onnx import helper

    opset = check_opset(opset_version)
    if not nms:
        program = _drop_nms(program)
    missing = unsupported_ops(program)
    if missing:
        raise UnsupportedOpError(
            "{} holds op {} that the ONNX export cannot convert{}; supported: see "
            "docs/onnx.md".format(program.source or "the program", missing[0],
                                  " (also: {})".format(", ".join(missing[1:]))
                                  if missing[1:] else ""))
    if fold_into_convs:
        fold_batch_norms(program)
    g = GraphBuilder(program, opset)
    for op in program.ops:
        CONVERTERS[op.type](g, op)
    inputs = [_value_info(program, name) for name in program.feeds]
    outputs = [_value_info(program, name, g.value(name)) for name in program.fetches]
    graph = helper.make_graph(g.nodes, graph_name, inputs, outputs,
                              initializer=list(g.initializers.values()))
    model = helper.make_model(graph, producer_name=PRODUCER,
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 9)   # readable by current ONNX Runtime builds
    onnx.checker.check_model(model)
    return model


def _value_info(program, name, onnx_name=None):
    from onnx import helper

    dtype = program.dtypes.get(name)
    elem = helper.np_dtype_to_tensor_dtype(dtype) if dtype is not None else 1
    shape = program.shapes.get(name)
    dims = None if shape is None else [d if d > 0 else None for d in shape]
    if dims is not None:
        dims = [d if d is not None else "{}_{}".format(name.replace(".", "_"), i)
                for i, d in enumerate(dims)]
    return helper.make_tensor_value_info(onnx_name or name, elem, dims)


def convert_export(model_dir, opset_version=DEFAULT_OPSET, nms=True, fold_into_convs=False):
    """Read an export folder (or a path prefix) and convert it; an onnx.ModelProto."""
    check_opset(opset_version)
    program = read_program(model_dir)
    name = os.path.basename(os.path.normpath(model_dir)) or "slimext"
    return convert_program(program, opset_version, nms, graph_name=name,
                           fold_into_convs=fold_into_convs)


def export_onnx(model_dir, save_file, opset_version=DEFAULT_OPSET, nms=True):
    """Write the export as ONNX to save_file (temporary name, then renamed); return the
    model's summary: op counts, Q/DQ counts, opset."""
    import onnx

    from slimext.fileio import atomic_path

    model = convert_export(model_dir, opset_version, nms)
    with atomic_path(save_file, suffix=".onnx") as staging:
        onnx.save(model, staging)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o666 & ~umask)   # a deliverable, not a private temporary file
    return summarize(model, save_file)


def summarize(model, path=None):
    counts = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return {"path": path, "opset": model.opset_import[0].version, "nodes": len(model.graph.node),
            "quantize": counts.get("QuantizeLinear", 0),
            "dequantize": counts.get("DequantizeLinear", 0),
            "outputs": [o.name for o in model.graph.output], "op_counts": counts}
