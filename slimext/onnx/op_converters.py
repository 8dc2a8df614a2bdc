"""One function per Paddle op type: it appends the ONNX nodes that compute the same thing.

Each converter gets the GraphBuilder and the ProgramOp and writes the op's outputs under
their Paddle names. Settings ONNX cannot express end in UnsupportedOpError naming the op.
Quantize/dequantize live in qdq.py, multiclass NMS in nms.py.
"""
import numpy as np

CONVERTERS = {}


def converts(*op_types):
    def register(function):
        for op_type in op_types:
            CONVERTERS[op_type] = function
        return function
    return register


def _x(g, op, slot="X"):
    return g.value(op.input(slot))


def _out(op, slot="Out"):
    return op.output(slot)


def _no_tensor_inputs(g, op, *slots):
    """Shapes and scales given as run-time tensors are not converted (exports fix them)."""
    for slot in slots:
        if op.inputs.get(slot):
            g.unsupported(op, "its {} is a run-time tensor; export with a fixed value".format(
                slot))


# convolution, normalization, pooling ---------------------------------------------------------
def _conv_pads(g, op, rank=2):
    paddings = list(op.attrs.get("paddings", [0] * rank))
    algorithm = op.attrs.get("padding_algorithm", "EXPLICIT")
    if algorithm == "SAME":
        return {"auto_pad": "SAME_UPPER"}
    if algorithm == "VALID":
        return {"pads": [0] * (2 * rank)}
    if len(paddings) == rank:
        return {"pads": paddings + paddings}
    if len(paddings) == 2 * rank:   # Paddle: [top, bottom, left, right]; ONNX: begins, ends
        return {"pads": paddings[0::2] + paddings[1::2]}
    g.unsupported(op, "paddings {} of unexpected length".format(paddings))


@converts("conv2d", "depthwise_conv2d")
def conv2d(g, op):
    if op.attrs.get("data_format", "NCHW") not in ("NCHW", "AnyLayout"):
        g.unsupported(op, "data_format {} (only NCHW)".format(op.attrs["data_format"]))
    inputs = [_x(g, op, "Input"), g.value(op.input("Filter"))]
    if op.input("Bias"):
        inputs.append(g.value(op.input("Bias")))
    g.node("Conv", inputs, _out(op, "Output"), strides=list(op.attrs.get("strides", [1, 1])),
           dilations=list(op.attrs.get("dilations", [1, 1])),
           group=int(op.attrs.get("groups", 1)), **_conv_pads(g, op))


@converts("batch_norm")
def batch_norm(g, op):
    if op.attrs.get("data_layout", "NCHW") not in ("NCHW", "AnyLayout"):
        g.unsupported(op, "data_layout {} (only NCHW)".format(op.attrs["data_layout"]))
    g.node("BatchNormalization", [_x(g, op)] + [g.value(op.input(s)) for s in
                                                ("Scale", "Bias", "Mean", "Variance")],
           _out(op, "Y"), epsilon=float(op.attrs.get("epsilon", 1e-5)))


@converts("pool2d")
def pool2d(g, op):
    if op.attrs.get("data_format", "NCHW") not in ("NCHW", "AnyLayout"):
        g.unsupported(op, "data_format {} (only NCHW)".format(op.attrs["data_format"]))
    kind = op.attrs.get("pooling_type", "max")
    ksize = list(op.attrs.get("ksize", [1, 1]))
    x = _x(g, op)
    shape = g.shape(op.input("X"))
    if op.attrs.get("global_pooling") or (op.attrs.get("adaptive") and ksize == [1, 1]):
        g.node("GlobalAveragePool" if kind == "avg" else "GlobalMaxPool", [x], _out(op))
        return
    if op.attrs.get("adaptive"):
        # An adaptive pool whose input divides evenly is a plain pool of the quotient.
        if not shape or min(shape[2:]) <= 0 or any(s % k for s, k in zip(shape[2:], ksize)):
            g.unsupported(op, "adaptive pooling to {} needs an input size divisible by it"
                          .format(ksize))
        kernel = [s // k for s, k in zip(shape[2:], ksize)]
        attrs = {"kernel_shape": kernel, "strides": kernel}
    else:
        attrs = {"kernel_shape": ksize, "strides": list(op.attrs.get("strides", [1, 1])),
                 "ceil_mode": int(bool(op.attrs.get("ceil_mode", False)))}
        attrs.update(_conv_pads(g, op))
    if kind == "avg":
        g.node("AveragePool", [x], _out(op),
               count_include_pad=0 if op.attrs.get("exclusive", True) else 1, **attrs)
    else:
        g.node("MaxPool", [x], _out(op), **attrs)


# element-wise arithmetic ------------------------------------------------------------------
def _broadcast_y(g, op, y):
    """Paddle's `axis` aligns Y's dims with X's from `axis` on; ONNX aligns trailing dims."""
    axis = op.attrs.get("axis", -1)
    x_rank, y_rank = g.rank(op.input("X")), g.rank(y)
    if axis < 0 and x_rank is not None:
        axis += x_rank
    if op.attrs.get("axis", -1) == -1 or x_rank is None or y_rank is None or \
            x_rank - axis - y_rank <= 0:
        return g.value(y)
    trailing = x_rank - axis - y_rank
    value = g.param(y)
    if value is not None:   # a parameter: reshape the stored value itself
        return g.constant(value.reshape(value.shape + (1,) * trailing), y)
    axes = g.int64s(list(range(y_rank, y_rank + trailing)), "axes")
    return g.node("Unsqueeze", [g.value(y), axes])


@converts("elementwise_add", "elementwise_sub", "elementwise_mul", "elementwise_div",
          "elementwise_pow", "elementwise_max", "elementwise_min")
def elementwise(g, op):
    onnx_type = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow",
                 "max": "Max", "min": "Min"}[op.type.split("_", 1)[1]]
    y = _broadcast_y(g, op, op.input("Y"))
    g.node(onnx_type, [_x(g, op), y], _out(op))


@converts("scale")
def scale(g, op):
    _no_tensor_inputs(g, op, "ScaleTensor")
    dtype = g.program.dtypes.get(op.input("X"), np.dtype("float32"))
    factor, bias = float(op.attrs.get("scale", 1.0)), float(op.attrs.get("bias", 0.0))
    x = _x(g, op)
    if factor == 1.0 and bias == 0.0:   # what Paddle 2.6's save appends to every output
        g.node("Identity", [x], _out(op))
        return
    if not op.attrs.get("bias_after_scale", True):
        bias *= factor   # scale * (x + bias)
    if factor != 1.0:
        x = g.node("Mul", [x, g.constant(np.asarray(factor, dtype), "scale")],
                   None if bias else _out(op))
    if bias or factor == 1.0:
        g.node("Add", [x, g.constant(np.asarray(bias, dtype), "bias")], _out(op))


# activations ------------------------------------------------------------------------------
_UNARY = {"relu": "Relu", "sigmoid": "Sigmoid", "sqrt": "Sqrt", "exp": "Exp", "tanh": "Tanh",
          "abs": "Abs", "log": "Log", "floor": "Floor", "ceil": "Ceil", "softplus": "Softplus"}


@converts(*_UNARY)
def unary(g, op):
    g.node(_UNARY[op.type], [_x(g, op)], _out(op))


@converts("hard_sigmoid")
def hard_sigmoid(g, op):
    g.node("HardSigmoid", [_x(g, op)], _out(op), alpha=float(op.attrs.get("slope", 0.2)),
           beta=float(op.attrs.get("offset", 0.5)))


@converts("hard_swish")
def hard_swish(g, op):
    # x * min(max(x + offset, 0), threshold) / scale == x * HardSigmoid(x) when threshold
    # equals scale (Paddle's defaults: 6, 6, 3).
    threshold, factor = op.attrs.get("threshold", 6.0), op.attrs.get("scale", 6.0)
    offset = op.attrs.get("offset", 3.0)
    if abs(threshold - factor) > 1e-6:
        g.unsupported(op, "threshold {} differs from scale {}".format(threshold, factor))
    x = _x(g, op)
    gate = g.node("HardSigmoid", [x], alpha=1.0 / factor, beta=offset / factor)
    g.node("Mul", [x, gate], _out(op))


@converts("swish", "silu")
def swish(g, op):
    x = _x(g, op)
    beta = float(op.attrs.get("beta", 1.0))
    gate_input = x if beta == 1.0 else g.node("Mul", [x, g.constant(np.float32(beta))])
    g.node("Mul", [x, g.node("Sigmoid", [gate_input])], _out(op))


@converts("relu6")
def relu6(g, op):
    g.node("Clip", [_x(g, op), g.constant(np.float32(0.0), "min"),
                    g.constant(np.float32(op.attrs.get("threshold", 6.0)), "max")], _out(op))


@converts("leaky_relu")
def leaky_relu(g, op):
    g.node("LeakyRelu", [_x(g, op)], _out(op), alpha=float(op.attrs.get("alpha", 0.02)))


@converts("softmax")
def softmax(g, op):
    g.node("Softmax", [_x(g, op)], _out(op), axis=int(op.attrs.get("axis", -1)))


@converts("dropout")
def dropout(g, op):
    # Inference: 'upscale_in_train' is the identity, 'downgrade_in_infer' scales by 1 - p.
    if op.attrs.get("dropout_implementation", "downgrade_in_infer") == "upscale_in_train":
        g.node("Identity", [_x(g, op)], _out(op))
    else:
        keep = np.float32(1.0 - op.attrs.get("dropout_prob", 0.5))
        g.node("Mul", [_x(g, op), g.constant(keep, "keep")], _out(op))


@converts("assign")
def assign(g, op):
    g.node("Identity", [_x(g, op)], _out(op))


# matrix products --------------------------------------------------------------------------
def _swap_last_two(g, name):
    rank = g.rank(name)
    if rank is None or rank < 2:
        return name
    perm = list(range(rank - 2)) + [rank - 1, rank - 2]
    value = g.param(name)
    if value is not None:
        return g.constant(np.transpose(value, perm), name)
    return g.node("Transpose", [name], perm=perm)


@converts("matmul_v2")
def matmul_v2(g, op):
    x, y = _x(g, op), _x(g, op, "Y")
    if op.attrs.get("trans_x"):
        x = _swap_last_two(g, x)
    if op.attrs.get("trans_y"):
        y = _swap_last_two(g, y)
    g.node("MatMul", [x, y], _out(op))


@converts("matmul")
def matmul(g, op):
    x, y = _x(g, op), _x(g, op, "Y")
    if op.attrs.get("transpose_X"):
        x = _swap_last_two(g, x)
    if op.attrs.get("transpose_Y"):
        y = _swap_last_two(g, y)
    alpha = float(op.attrs.get("alpha", 1.0))
    product = g.node("MatMul", [x, y], None if alpha != 1.0 else _out(op))
    if alpha != 1.0:
        g.node("Mul", [product, g.constant(np.float32(alpha), "alpha")], _out(op))


# shapes -----------------------------------------------------------------------------------
@converts("reshape2", "reshape")
def reshape2(g, op):
    if op.inputs.get("ShapeTensor"):
        g.unsupported(op, "its ShapeTensor is a run-time tensor list")
    if op.input("Shape"):
        shape = g.node("Cast", [_x(g, op, "Shape")], to=7)   # int64
    else:
        shape = g.int64s(list(op.attrs["shape"]))
    g.node("Reshape", [_x(g, op), shape], _out(op))


@converts("transpose2", "transpose")
def transpose2(g, op):
    g.node("Transpose", [_x(g, op)], _out(op), perm=list(op.attrs["axis"]))


@converts("concat")
def concat(g, op):
    _no_tensor_inputs(g, op, "AxisTensor")
    g.node("Concat", [g.value(n) for n in op.inputs["X"]], _out(op),
           axis=int(op.attrs.get("axis", 0)))


@converts("split")
def split(g, op):
    _no_tensor_inputs(g, op, "AxisTensor", "SectionsTensorList")
    axis = int(op.attrs.get("axis", 0))
    outputs = op.outputs["Out"]
    sections = list(op.attrs.get("sections") or [])
    shape = g.shape(op.input("X"))
    size = shape[axis] if shape and shape[axis] > 0 else None
    if not sections:
        if size is None:
            if g.opset >= 18:
                g.node("Split", [_x(g, op)], outputs, axis=axis, num_outputs=len(outputs))
                return
            g.unsupported(op, "split into {} parts of an axis of unknown size".format(
                len(outputs)))
        sections = [size // len(outputs)] * len(outputs)
    if -1 in sections:
        if size is None:
            g.unsupported(op, "section -1 on an axis of unknown size")
        sections[sections.index(-1)] = size - sum(s for s in sections if s != -1)
    g.node("Split", [_x(g, op), g.int64s(sections, "sections")], outputs, axis=axis)


@converts("flatten_contiguous_range")
def flatten_contiguous_range(g, op):
    rank = g.rank(op.input("X"))
    start, stop = op.attrs.get("start_axis", 1), op.attrs.get("stop_axis", -1)
    start, stop = start % rank, stop % rank
    if stop == rank - 1:
        shape = [0] * start + [-1]
    else:
        dims = g.shape(op.input("X"))
        if any(d <= 0 for d in dims[start:]):
            g.unsupported(op, "flattening inner axes of unknown size")
        shape = [0] * start + [int(np.prod(dims[start:stop + 1]))] + list(dims[stop + 1:])
    g.node("Reshape", [_x(g, op), g.int64s(shape)], _out(op))


@converts("unsqueeze2", "unsqueeze")
def unsqueeze2(g, op):
    _no_tensor_inputs(g, op, "AxesTensor", "AxesTensorList")
    g.node("Unsqueeze", [_x(g, op), g.int64s(list(op.attrs["axes"]), "axes")], _out(op))


@converts("squeeze2", "squeeze")
def squeeze2(g, op):
    axes = list(op.attrs.get("axes") or [])
    inputs = [_x(g, op)] + ([g.int64s(axes, "axes")] if axes else [])
    g.node("Squeeze", inputs, _out(op))


@converts("reduce_mean", "reduce_sum", "reduce_max")
def reduce(g, op):
    onnx_type = {"reduce_mean": "ReduceMean", "reduce_sum": "ReduceSum",
                 "reduce_max": "ReduceMax"}[op.type]
    keepdims = int(bool(op.attrs.get("keep_dim", False)))
    if op.attrs.get("reduce_all"):
        axes = list(range(g.rank(op.input("X"))))
    else:
        axes = list(op.attrs.get("dim", []))
    # Axes are an input for ReduceSum from opset 13 and for the others from opset 18.
    if onnx_type == "ReduceSum" or g.opset >= 18:
        g.node(onnx_type, [_x(g, op), g.int64s(axes, "axes")], _out(op), keepdims=keepdims)
    else:
        g.node(onnx_type, [_x(g, op)], _out(op), axes=axes, keepdims=keepdims)


# resizing ---------------------------------------------------------------------------------
_INTERP_MODES = {"nearest_interp_v2": "nearest", "bilinear_interp_v2": "linear",
                 "nearest_interp": "nearest", "bilinear_interp": "linear"}


@converts(*_INTERP_MODES)
def interp_v2(g, op):
    _no_tensor_inputs(g, op, "OutSize", "SizeTensor", "Scale")
    if op.attrs.get("data_layout", "NCHW") not in ("NCHW", "AnyLayout"):
        g.unsupported(op, "data_layout {} (only NCHW)".format(op.attrs["data_layout"]))
    mode = _INTERP_MODES[op.type]
    align_corners = bool(op.attrs.get("align_corners", False))
    if mode == "nearest":
        if align_corners:
            g.unsupported(op, "nearest resize with align_corners")
        transform, extra = "asymmetric", {"nearest_mode": "floor"}
    else:
        transform = ("align_corners" if align_corners else
                     "asymmetric" if op.attrs.get("align_mode", 1) == 1 else "half_pixel")
        extra = {}
    x = _x(g, op)
    scales = list(op.attrs.get("scale") or [])
    out_h, out_w = op.attrs.get("out_h", -1), op.attrs.get("out_w", -1)
    empty = g.constant(np.zeros(0, np.float32), "roi")
    if scales and all(s > 0 for s in scales):
        if len(scales) == 1:
            scales = scales * 2
        resize_scales = g.constant(np.asarray([1.0, 1.0] + scales, np.float32), "scales")
        g.node("Resize", [x, empty, resize_scales], _out(op), mode=mode,
               coordinate_transformation_mode=transform, **extra)
    elif out_h > 0 and out_w > 0:
        leading = g.node("Slice", [g.node("Shape", [x]), g.int64s([0]), g.int64s([2])])
        sizes = g.node("Concat", [leading, g.int64s([out_h, out_w])], axis=0)
        g.node("Resize", [x, empty, g.constant(np.zeros(0, np.float32), "scales"), sizes],
               _out(op), mode=mode, coordinate_transformation_mode=transform, **extra)
    else:
        g.unsupported(op, "neither a scale nor an output size is set")
