"""For ONNX Runtime: run a QDQ conv whose output is not quantized as ConvInteger.

ONNX Runtime turns DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv, but a conv
whose output goes on in float (conv + hard-swish, conv + sigmoid: PicoDet's pattern, where
the next quantizer sits after the activation) stays a float Conv on dequantized inputs.
The same integer arithmetic exists as ConvInteger (uint8 input, int8 filter, int32 sums):

    q_u8  = QuantizeLinear(x, step_x, zero_point=128)      # the same values as the int8
    acc   = ConvInteger(q_u8, w_int8, 128)                  #   quantizer, offset by 128
    y     = Cast(acc) * (step_x * step_w[c]) + bias[c]

which equals DQ -> Conv up to float rounding. Only the in-memory model ONNX Runtime loads
is rewritten; the exported file stays standard QDQ for TensorRT and OpenVINO. Grouped
(depthwise) convs are left alone: ConvInteger runs them as one small GEMM per group,
slower than the float conv.
"""
import numpy as np


def _producers(graph):
    return {out: node for node in graph.node for out in node.output}


def _consumers(graph):
    found = {}
    for node in graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    for output in graph.output:
        found.setdefault(output.name, []).append(None)
    return found


def _attr(node, name, default=None):
    from onnx import helper

    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def lower_float_output_convs(model):
    """Rewrite eligible convs of `model` (in place) to ConvInteger; return how many."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producers, consumers = _producers(graph), _consumers(graph)
    new_inits, rewritten = [], 0
    replaced = {}   # id(conv) -> nodes that replace it

    def const(name):
        return numpy_helper.to_array(inits[name]) if name in inits else None

    for conv in list(graph.node):
        if conv.op_type != "Conv" or _attr(conv, "group", 1) != 1:
            continue
        if any(c is not None and c.op_type == "QuantizeLinear"
               for c in consumers.get(conv.output[0], [])):
            continue   # ONNX Runtime makes this a QLinearConv itself
        x_dq, w_dq = producers.get(conv.input[0]), producers.get(conv.input[1])
        if x_dq is None or w_dq is None or x_dq.op_type != "DequantizeLinear" or \
                w_dq.op_type != "DequantizeLinear":
            continue
        x_q = producers.get(x_dq.input[0])
        weight = const(w_dq.input[0])
        x_step, w_step = const(x_dq.input[1]), const(w_dq.input[1])
        if x_q is None or x_q.op_type != "QuantizeLinear" or weight is None or \
                weight.dtype != np.int8 or x_step is None or x_step.size != 1 or \
                w_step is None or not _zero(const, x_dq) or not _zero(const, w_dq):
            continue
        bias = const(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
        if len(conv.input) > 2 and conv.input[2] and bias is None:
            continue
        channels = weight.shape[0]
        base = conv.output[0]
        names = {key: "{}@int_{}".format(base, key) for key in
                 ("zp", "u8", "acc", "accf", "step", "bias", "scaled")}
        new_inits.append(numpy_helper.from_array(np.array(128, np.uint8), names["zp"]))
        step = (np.float32(x_step.reshape(())) *
                np.broadcast_to(w_step.astype(np.float32).reshape(-1), (channels,)))
        new_inits.append(numpy_helper.from_array(step.reshape(1, -1, 1, 1).astype(np.float32),
                                                 names["step"]))
        conv_attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        nodes = [
            helper.make_node("QuantizeLinear", [x_q.input[0], x_q.input[1], names["zp"]],
                             [names["u8"]]),
            helper.make_node("ConvInteger", [names["u8"], w_dq.input[0], names["zp"]],
                             [names["acc"]], **conv_attrs),
            helper.make_node("Cast", [names["acc"]], [names["accf"]], to=1),
        ]
        if bias is not None:
            new_inits.append(numpy_helper.from_array(
                bias.reshape(1, -1, 1, 1).astype(np.float32), names["bias"]))
            nodes.append(helper.make_node("Mul", [names["accf"], names["step"]],
                                          [names["scaled"]]))
            nodes.append(helper.make_node("Add", [names["scaled"], names["bias"]], [base]))
        else:
            nodes.append(helper.make_node("Mul", [names["accf"], names["step"]], [base]))
        replaced[id(conv)] = nodes
        rewritten += 1
    if rewritten:
        nodes = []
        for node in graph.node:
            nodes.extend(replaced.get(id(node), [node]))
        del graph.node[:]
        graph.node.extend(nodes)
        graph.initializer.extend(new_inits)
    return rewritten


def _zero(const, dq):
    if len(dq.input) < 3 or not dq.input[2]:
        return True
    value = const(dq.input[2])
    return value is not None and not np.any(value)
