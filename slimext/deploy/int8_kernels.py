"""Proof that an INT8 run used INT8 kernels: read the program the runtime actually executes.

`enable_mkldnn_int8()` on a float export, or on a QDQ export whose scales the INT8 passes
reject, silently runs fp32. The optimized program Paddle Inference writes
(`enable_save_optim_model`) says what ran: convolutions with `mkldnn_data_type` 'int8' and
the `quantize`/`dequantize`/`requantize` reorders between INT8 and fp32 regions. OpenVINO's
compiled model says the same through each node's runtime precision, ONNX Runtime's optimized
graph through its integer kernels (QLinearConv, ConvInteger, MatMulInteger, ...).

    report = paddle_int8_report(optimized_program_path)
    print(report.line())     # INT8 kernels: 98 of 98 convs, 13 other ops (...); 9 quantize, ...
    confirm_int8(report, model_dir)   # raises Int8NotUsedError when no conv ran INT8
"""
import collections
import os
from dataclasses import dataclass, field

CONV_OP_TYPES = ("conv2d", "depthwise_conv2d", "fused_conv2d", "conv2d_transpose")
# Matrix products after Paddle's passes (a linear layer becomes fc; attention stays matmul).
MATMUL_OP_TYPES = ("fc", "matmul", "matmul_v2", "fused_matmul", "mul")
# Reorders between fp32 and INT8 regions that Paddle's oneDNN INT8 passes insert.
REORDER_OP_TYPES = ("quantize", "dequantize", "requantize")
# Ops that only a quantization-aware (QDQ) export carries.
QDQ_OP_PREFIXES = ("quantize_linear", "dequantize_linear", "fake_quantize", "fake_dequantize",
                   "fake_channel_wise")
INT8_PRECISIONS = ("i8", "u8")
PLAN_SIDECAR = "quant_plan.json"   # slimext.quant.validate.SIDECAR (no import: deploy-only)


class Int8NotUsedError(RuntimeError):
    """An INT8 run whose program executed no convolution in INT8."""


@dataclass
class Int8KernelReport:
    runtime: str
    convs: int
    int8_convs: int
    int8_ops: dict = field(default_factory=dict)     # non-conv op type -> count run in INT8
    reorders: dict = field(default_factory=dict)     # reorder op type -> count
    fp32_convs: list = field(default_factory=list)   # output names of convs left in fp32
    fp32_filters: list = field(default_factory=list)  # their filter names, same order
    # output name -> (layer path, why it is float) for the fp32 convs whose reason is known
    # (planned float by the export: explain_fp32_convs; left float by the runtime's own
    # rules); the others the runtime kept fp32 on its own.
    fp32_reasons: dict = field(default_factory=dict)
    # Matrix products (MATMUL_OP_TYPES; a transformer's linears and attention): all, INT8.
    # The INT8 ones are counted in int8_ops as well.
    matmuls: int = 0
    int8_matmuls: int = 0

    @property
    def used_int8(self):
        return self.int8_convs > 0

    def line(self):
        """One line for a console: 'INT8 kernels: 98 of 98 convs, 13 other ops (...); ...'."""
        others = sum(self.int8_ops.values())
        text = "INT8 kernels: {} of {} convs".format(self.int8_convs, self.convs)
        if others:
            text += ", {} other ops ({})".format(others, ", ".join(
                "{} {}".format(op, n) for op, n in sorted(self.int8_ops.items(),
                                                          key=lambda kv: (-kv[1], kv[0]))))
        if self.reorders:
            text += "; " + ", ".join("{} {}".format(n, op) for op, n in sorted(
                self.reorders.items()))
        if self.fp32_convs:
            text += "; " + self.fp32_line()
        return text + " [{}]".format(self.runtime)

    def fp32_line(self):
        """'3 convs fp32: yolo_head.yolo_output.{0,1,2} (planned float: model skip_quant)'."""
        by_reason = collections.OrderedDict()
        for output in self.fp32_convs:
            path, reason = self.fp32_reasons.get(output, (output, None))
            by_reason.setdefault(reason, []).append(path)
        parts = []
        unexplained = ("not planned float: the INT8 passes kept them fp32; --verbose shows "
                       "their log" if self.runtime == "paddle" else
                       "not planned float: {} kept them fp32".format(self.runtime))
        for reason, paths in by_reason.items():
            parts.append("{} ({})".format(_compact_paths(paths), reason or unexplained))
        return "{} conv{} fp32: {}".format(len(self.fp32_convs),
                                           "" if len(self.fp32_convs) == 1 else "s",
                                           "; ".join(parts))

    def as_dict(self):
        return {"runtime": self.runtime, "convs": self.convs, "int8_convs": self.int8_convs,
                "int8_ops": dict(self.int8_ops), "reorders": dict(self.reorders),
                "fp32_convs": list(self.fp32_convs),
                "fp32_reasons": {k: list(v) for k, v in self.fp32_reasons.items()},
                "matmuls": self.matmuls, "int8_matmuls": self.int8_matmuls,
                "line": self.line()}


def _compact_paths(paths):
    """['a.b.0', 'a.b.1', 'c', 'c'] -> 'a.b.{0,1}, c x2' (paths sharing all but the last
    part; a layer run several times is one conv op per call)."""
    counts = collections.OrderedDict()
    for path in paths:
        counts[path] = counts.get(path, 0) + 1
    groups = collections.OrderedDict()
    for path, count in counts.items():
        head, _, tail = path.rpartition(".")
        groups.setdefault(head, []).append(tail + (" x{}".format(count) if count > 1 else ""))
    texts = []
    for head, tails in groups.items():
        if not head:
            texts.extend(tails)
        elif len(tails) == 1:
            texts.append("{}.{}".format(head, tails[0]))
        else:
            texts.append("{}.{{{}}}".format(head, ",".join(tails)))
    return ", ".join(texts)


def _read_program(path):
    # The protobuf message itself: no executor, no IR choice (reads the same on 2.6 and 3.x).
    from paddle.base.proto import framework_pb2

    with open(path, "rb") as f:
        return framework_pb2.ProgramDesc.FromString(f.read())


def _string_attr(op, name):
    # A serialized op may list an attribute twice (a pass re-set it); the last one holds.
    value = None
    for attr in op.attrs:
        if attr.name == name:
            value = attr.s
    return value


def _all_ops(program):
    return [op for block in program.blocks for op in block.ops]


def is_qdq_program(model_path):
    """True when the exported program carries quantize/dequantize (QAT or PTQ export)."""
    return any(op.type.startswith(QDQ_OP_PREFIXES) for op in _all_ops(_read_program(model_path)))


def paddle_int8_report(optimized_program_path):
    """What ran INT8 in the program Paddle Inference optimized (`_optimized.pdmodel`)."""
    convs, int8_convs, fp32_convs, fp32_filters = 0, 0, [], []
    matmuls, int8_matmuls = 0, 0
    int8_ops, reorders = collections.Counter(), collections.Counter()
    for op in _all_ops(_read_program(optimized_program_path)):
        int8 = _string_attr(op, "mkldnn_data_type") == "int8"
        if op.type in MATMUL_OP_TYPES:
            matmuls += 1
            int8_matmuls += int(int8)
        if op.type in CONV_OP_TYPES:
            convs += 1
            if int8:
                int8_convs += 1
            else:
                outputs = [name for var in op.outputs for name in var.arguments]
                fp32_convs.append(outputs[0] if outputs else op.type)
                fp32_filters.append(next((var.arguments[0] for var in op.inputs
                                          if var.parameter == "Filter" and var.arguments),
                                         None))
        elif op.type in REORDER_OP_TYPES:
            reorders[op.type] += 1
        elif int8:
            int8_ops[op.type] += 1
    return Int8KernelReport("paddle", convs, int8_convs, dict(int8_ops), dict(reorders),
                            fp32_convs, fp32_filters, matmuls=matmuls,
                            int8_matmuls=int8_matmuls)


def explain_fp32_convs(report, model_dir):
    """Name the layer and reason of each fp32 conv the export planned float, from the
    export's quant_plan.json ('float_layers': filter name -> layer path, reason)."""
    import json

    sidecar = os.path.join(model_dir, PLAN_SIDECAR)
    if not os.path.isfile(sidecar):
        return report
    with open(sidecar) as f:
        float_layers = json.load(f).get("report", {}).get("float_layers", [])
    by_weight = {layer["weight"]: (layer["path"], layer["reason"]) for layer in float_layers}
    for output, weight in zip(report.fp32_convs, report.fp32_filters):
        # A float filter stored as an exact INT8 copy reads '<weight>@dequantized'.
        weight = (weight or "").split("@")[0]
        if weight in by_weight:
            path, reason = by_weight[weight]
            report.fp32_reasons[output] = (path, "planned float: " + reason)
    return report


def openvino_int8_report(compiled_model):
    """What ran INT8 in an OpenVINO CPU compiled model (its runtime graph's precisions)."""
    convs, int8_convs, fp32_convs = 0, 0, []
    int8_ops, reorders = collections.Counter(), collections.Counter()
    for node in compiled_model.get_runtime_model().get_ops():
        info = node.get_rt_info()
        layer = info["layerType"].astype(str) if "layerType" in info else node.get_type_name()
        precision = (info["runtimePrecision"].astype(str) if "runtimePrecision" in info
                     else "")
        int8 = precision in INT8_PRECISIONS
        if layer in ("Convolution", "GroupConvolution", "Deconvolution"):
            convs += 1
            if int8:
                int8_convs += 1
            else:
                fp32_convs.append(node.get_friendly_name())
        elif layer == "Reorder":
            reorders["reorder"] += 1
        elif int8 and layer not in ("Const", "Input", "Output", "Reshape"):
            int8_ops[layer] += 1
    return Int8KernelReport("openvino", convs, int8_convs, dict(int8_ops), dict(reorders),
                            fp32_convs)


def confirm_int8(report, model_dir):
    """Raise Int8NotUsedError, saying why and what to do, unless some conv ran INT8."""
    if report.used_int8:
        return report
    model_path = os.path.join(model_dir, "model.pdmodel")
    if os.path.isfile(model_path) and not is_qdq_program(model_path):
        raise Int8NotUsedError(
            "{} is a float export (no quantize/dequantize ops), so INT8 would run fp32 "
            "({}); export it from quantization-aware training (tools/export_model.py "
            "--slim_config ...) or tools/post_quant.py, or run it with --precision onednn"
            .format(model_dir, report.line()))
    raise Int8NotUsedError(
        "{} has quantize/dequantize ops but {} ran no convolution in INT8 ({}); the INT8 "
        "passes did not accept its scales: run again with --verbose to see the pass log"
        .format(model_dir, report.runtime, report.line()))


# ONNX Runtime's CPU kernels that compute in integers, by what they replace.
ORT_INT8_CONVS = ("QLinearConv", "ConvInteger", "NhwcQLinearConv")
ORT_FLOAT_CONVS = ("Conv", "FusedConv", "NchwcConv", "ConvTranspose")
ORT_INT8_OTHERS = ("MatMulInteger", "QLinearMatMul", "QGemm", "MatMulIntegerToFloat",
                   "DynamicQuantizeMatMul", "QLinearAdd", "QLinearMul", "QLinearConcat",
                   "QLinearSigmoid", "QLinearLeakyRelu", "QLinearGlobalAveragePool",
                   "QLinearAveragePool", "QLinearSoftmax", "QLinearReduceMean", "QLinearWhere")


# Why a depthwise conv runs fp32 in ONNX Runtime (slimext.onnx.integer_convs leaves it).
ORT_GROUPED_FLOAT_REASON = ("output not quantized: ONNX Runtime fuses only DQ-conv-Q into "
                            "QLinearConv, and its ConvInteger runs grouped convs slower than "
                            "float")


def onnxruntime_int8_report(optimized_model, source_model=None):
    """What ran INT8 in the graph ONNX Runtime optimized (an onnx.ModelProto read from
    SessionOptions.optimized_model_filepath): integer conv kernels and the Q/DQ left. The
    converter keeps Paddle's filter names, so explain_fp32_convs names planned-float ones;
    a conv that ONNX Runtime moved to its blocked layout (node '<output>_nchwc', filter
    renamed) is traced back through source_model, the graph it was given."""
    source_filters = {node.output[0]: node.input[1] for node in
                      (source_model.graph.node if source_model is not None else ())
                      if node.op_type == "Conv" and len(node.input) > 1}
    convs, int8_convs, fp32_convs, fp32_filters, fp32_reasons = 0, 0, [], [], {}
    int8_ops, reorders = collections.Counter(), collections.Counter()
    for node in optimized_model.graph.node:
        if node.op_type in ORT_INT8_CONVS:
            convs += 1
            int8_convs += 1
        elif node.op_type in ORT_FLOAT_CONVS:
            convs += 1
            output = node.output[0] if node.output else node.op_type
            fp32_convs.append(output)
            source_output = node.name[:-len("_nchwc")] if node.name.endswith("_nchwc") else None
            fp32_filters.append(source_filters.get(source_output) or
                                (node.input[1] if len(node.input) > 1 else None))
            if _int_attribute(node, "group", 1) > 1:
                fp32_reasons[output] = ("depthwise", ORT_GROUPED_FLOAT_REASON)
        elif node.op_type in ORT_INT8_OTHERS:
            int8_ops[node.op_type] += 1
        elif node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            reorders[node.op_type] += 1
    return Int8KernelReport("onnxruntime", convs, int8_convs, dict(int8_ops), dict(reorders),
                            fp32_convs, fp32_filters, fp32_reasons)


def _int_attribute(node, name, default):
    for attr in node.attribute:
        if attr.name == name:
            return attr.i
    return default
