"""Joins interception never saw: find them in the traced program, report them.

Interception (slimext.quant.interception) sees the joins that go through its patch points.
A join written another way (an op Paddle reaches only through `_C_ops`, a function imported
by name before the patch) still shows up in the static program. Tracing with a recorder
that notes the output of every op interception saw, then scanning the program for ops that
merge two or more float activations, lists the rest: joins that get no quantizer and that
no rule keeps in float on purpose.

Joins after the last conv/matmul (post-processing) are left out, as the plan leaves them
out; so are ops on integers (shape arithmetic).
"""
import logging
from dataclasses import dataclass

logger = logging.getLogger("slimext.coverage")

# Static op types of the join forms: old IR (Paddle 2.6) and PIR (Paddle 3) names.
JOIN_OP_TYPES = {"elementwise_add": "add", "elementwise_sub": "subtract", "sum": "add",
                 "elementwise_mul": "multiply", "concat": "concat", "stack": "stack",
                 "pd_op.add": "add", "pd_op.subtract": "subtract", "pd_op.add_n": "add",
                 "pd_op.multiply": "multiply", "pd_op.concat": "concat", "pd_op.stack": "stack",
                 "matmul_v2": "matmul", "matmul": "matmul", "pd_op.matmul": "matmul"}
QUANTIZABLE_OP_TYPES = ("conv2d", "depthwise_conv2d", "conv2d_transpose", "matmul_v2",
                        "matmul", "mul", "pd_op.conv2d", "pd_op.depthwise_conv2d",
                        "pd_op.conv2d_transpose", "pd_op.matmul")


class JoinCoverageError(RuntimeError):
    """strict: true and a join of activations has no quantizer; the message lists them."""


@dataclass
class UncoveredJoin:
    op_type: str
    kind: str
    output: str
    location: str

    def describe(self):
        return "{} ({}) -> {} at {}".format(self.kind, self.op_type, self.output, self.location)


@dataclass
class OpView:
    """What the scan needs of one op, in either IR: keys identify values across ops."""
    type: str
    inputs: list        # [(key, is_float)]
    outputs: list       # [(key, is_float)]
    callstack: list


def value_key(value):
    """How a traced value is recognised in its program: old-IR variable name or PIR id."""
    import paddle

    pir_value = getattr(getattr(paddle, "pir", None), "Value", None)
    if pir_value is not None and isinstance(value, pir_value):
        return value.id
    return getattr(value, "name", None)


def _location(callstack):
    """The model-code line that created an op (dy2static records the Python call stack)."""
    frames = [line for line in callstack or [] if line.strip().startswith("File")]
    for line in reversed(frames):
        if "/paddle/" not in line and "/slimext/quant/" not in line:
            return " ".join(line.split())
    return " ".join(frames[-1].split()) if frames else "unknown location"


def _old_ir_ops(program):
    from paddle.base import core

    types = core.VarDesc.VarType
    block = program.global_block()

    def is_float(name):
        var = block._find_var_recursive(name)
        if var is None or var.type != types.LOD_TENSOR:  # feed/fetch lists, tensor arrays
            return False
        return var.dtype in (types.FP32, types.FP16, types.BF16, types.FP64)

    for op in block.ops:
        callstack = op.attr("op_callstack") if op.has_attr("op_callstack") else []
        yield OpView(op.type, [(n, is_float(n)) for n in op.input_arg_names],
                     [(n, is_float(n)) for n in op.output_arg_names], callstack)


def _pir_ops(program):
    import paddle

    floats = (paddle.float32, paddle.float16, paddle.bfloat16, paddle.float64)

    def is_float(value):
        try:
            return value.dtype in floats
        except Exception:  # a vector (builtin.combine) or a value without a dtype
            return False

    combined = {}  # builtin.combine output -> its operands: concat/stack/add_n read them
    for op in program.global_block().ops:
        operands = []
        for value in op.operands_source():
            operands.extend(combined.get(value.id, [value]))
        if op.name() == "builtin.combine":
            for result in op.results():
                combined[result.id] = operands
        attrs = op.attrs()
        callstack = attrs.get("op_callstack") or []
        yield OpView(op.name(), [(v.id, is_float(v)) for v in operands],
                     [(v.id, is_float(v)) for v in op.results()], list(callstack))


def program_ops(program):
    """OpViews of an old-IR or a PIR program."""
    if hasattr(program, "desc"):
        return list(_old_ir_ops(program))
    return list(_pir_ops(program))


def find_uncovered_joins(program, seeds, seen_outputs):
    """Join ops of `program` whose output interception did not see.

    seeds: keys (value_key) of the input values (activations start there).
    seen_outputs: keys of the join outputs interception handled while tracing.
    """
    ops = program_ops(program)
    last_quantizable = max((i for i, op in enumerate(ops) if op.type in QUANTIZABLE_OP_TYPES),
                           default=-1)
    activations = set(seeds)
    uncovered = []
    for index, op in enumerate(ops):
        inputs = [(key, is_float) for key, is_float in op.inputs if key in activations]
        if not inputs:
            continue
        activations.update(key for key, is_float in op.outputs if is_float)
        kind = JOIN_OP_TYPES.get(op.type)
        if kind is None or index > last_quantizable:
            continue
        if sum(is_float for _, is_float in inputs) < 2 \
                or any(key in seen_outputs for key, _ in op.outputs):
            continue
        output = op.outputs[0][0] if op.outputs else "?"
        uncovered.append(UncoveredJoin(op.type, kind, str(output), _location(op.callstack)))
    return uncovered


def report_uncovered(uncovered, where, strict):
    """Warn about (or with strict, refuse) joins without quantizers; returns the lines."""
    if not uncovered:
        return []
    lines = [join.describe() for join in uncovered]
    message = ("{} join(s) of activations in the {} were not intercepted and have no "
               "quantizer: {}; write them as x + y, x - y, paddle.add/subtract/add_n/concat/"
               "stack/matmul called through the paddle module (see docs/residual_qat.md, 'Join "
               "forms'), or set strict: false to accept them in float".format(
                   len(lines), where, "; ".join(lines)))
    if strict:
        raise JoinCoverageError(message)
    logger.warning(message.replace("or set strict: false to accept them in float",
                                   "they stay in float"))
    return lines


class CoverageRecorder:
    """Interception handler that changes nothing and notes the output of every join op."""

    def __init__(self):
        self.seen_outputs = set()

    def on_join(self, kind, operands, compute):
        result = compute(operands)
        self.seen_outputs.add(value_key(result))
        return result

    def on_unquantizable_join(self, kind, form, operands):
        # Reported by discovery with a better message; not a second time here.
        if operands:
            self.seen_outputs.add(value_key(operands[0]))


def trace_uncovered_joins(model, example_inputs):
    """Trace `model` (to_static, full graph) and return its UncoveredJoins.

    Raises whatever tracing raises; the caller decides whether that stops the run.
    """
    import paddle

    from slimext.compat.tracing import export_tracing
    from slimext.quant.interception import handling, install
    from slimext.quant.joins import flatten_values

    if not paddle.in_dynamic_mode():
        raise RuntimeError("the coverage trace needs dygraph mode")
    recorder = CoverageRecorder()
    # to_static replaces the forward of the root and of every sublayer it converts; the
    # model must train afterwards exactly as before, so every layer gets its own back.
    layers = [model] + list(model.sublayers())
    forwards = [layer.__dict__.get("forward") for layer in layers]
    attributes = [_attribute_snapshot(layer) for layer in layers]
    install()  # before the export scope puts its old-IR stand-ins beneath the wrappers
    try:
        with export_tracing(), handling(recorder):
            static_model = paddle.jit.to_static(model, full_graph=True)
            concrete, _ = static_model.forward.get_concrete_program(*example_inputs)
            seeds = [value_key(value) for value in flatten_values(concrete.inputs)]
            return find_uncovered_joins(concrete.main_program, seeds, recorder.seen_outputs)
    finally:
        for layer, forward in zip(layers, forwards):
            if forward is None:
                layer.__dict__.pop("forward", None)
            else:
                layer.__dict__["forward"] = forward
        for layer, saved in zip(layers, attributes):
            _drop_static_leftovers(layer, saved)


# A Layer's own bookkeeping, which tracing does not fill with static values.
_LAYER_INTERNALS = ("_parameters", "_sub_layers", "_buffers", "_forward_pre_hooks",
                    "_forward_post_hooks", "_loaddict_holder", "_casted_by_pure_fp16",
                    "_state_dict_hooks")


def _attribute_snapshot(layer):
    """{name: (value, a shallow copy of its items)} of the layer's plain attributes."""
    saved = {}
    for name, value in layer.__dict__.items():
        if name in _LAYER_INTERNALS or name == "forward":
            continue
        items = dict(value) if isinstance(value, dict) else \
            list(value) if isinstance(value, list) else None
        saved[name] = (value, items)
    return saved


def _holds_static_value(value, depth=2):
    import paddle

    static_types = tuple(t for t in (paddle.static.Variable,
                                     getattr(getattr(paddle, "pir", None), "Value", None))
                         if isinstance(t, type))
    if isinstance(value, static_types):  # Paddle counts dygraph tensors as Variables too
        return not isinstance(value, paddle.Tensor)
    if depth and isinstance(value, dict):
        return any(_holds_static_value(v, depth - 1) for v in value.values())
    if depth and isinstance(value, (list, tuple)):
        return any(_holds_static_value(v, depth - 1) for v in value)
    return False


def _drop_static_leftovers(layer, saved):
    """Undo what the traced forward stored on the layer (ppdet's `self.inputs[...] = ...`):
    a static variable left there cannot be deep-copied or used again in dygraph."""
    for name, value in list(layer.__dict__.items()):
        if name in _LAYER_INTERNALS or name == "forward" or not _holds_static_value(value):
            continue
        if name not in saved:
            del layer.__dict__[name]
            continue
        original, items = saved[name]
        if isinstance(original, dict):
            original.clear()
            original.update(items)
        elif isinstance(original, list):
            original[:] = items
        layer.__dict__[name] = original

