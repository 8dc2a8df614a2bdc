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

# Static op types of the join forms (old IR names, from Paddle 2.6 programs).
JOIN_OP_TYPES = {"elementwise_add": "add", "elementwise_sub": "subtract", "sum": "add",
                 "concat": "concat", "stack": "stack"}
QUANTIZABLE_OP_TYPES = ("conv2d", "depthwise_conv2d", "conv2d_transpose", "matmul_v2",
                        "matmul", "mul")


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


def _is_float(var):
    from paddle.base import core

    types = core.VarDesc.VarType
    if var is None or var.type != types.LOD_TENSOR:  # feed/fetch lists, tensor arrays
        return False
    return var.dtype in (types.FP32, types.FP16, types.BF16, types.FP64)


def _location(op):
    """The model-code line that created `op` (dy2static records the Python call stack)."""
    if not op.has_attr("op_callstack"):
        return "unknown location"
    frames = [line for line in op.attr("op_callstack") or [] if line.strip().startswith("File")]
    for line in reversed(frames):
        if "/paddle/" not in line and "/slimext/quant/" not in line:
            return line.strip().replace("\n", " ")
    return frames[-1].strip() if frames else "unknown location"


def find_uncovered_joins(program, seeds, seen_outputs):
    """Join ops of `program` (old IR) whose output interception did not see.

    seeds: names of the input variables (activations start there).
    seen_outputs: names of join outputs interception handled while tracing.
    """
    block = program.global_block()
    ops = list(block.ops)
    last_quantizable = max((i for i, op in enumerate(ops) if op.type in QUANTIZABLE_OP_TYPES),
                           default=-1)
    activations = set(seeds)
    uncovered = []
    for index, op in enumerate(ops):
        inputs = [n for n in op.input_arg_names if n in activations]
        if not inputs:
            continue
        outputs = [n for n in op.output_arg_names if _is_float(block._find_var_recursive(n))]
        activations.update(outputs)
        kind = JOIN_OP_TYPES.get(op.type)
        if kind is None or index > last_quantizable:
            continue
        float_inputs = [n for n in inputs if _is_float(block._find_var_recursive(n))]
        if len(float_inputs) < 2 or any(n in seen_outputs for n in op.output_arg_names):
            continue
        uncovered.append(UncoveredJoin(op.type, kind, op.output_arg_names[0], _location(op)))
    return uncovered


def report_uncovered(uncovered, where, strict):
    """Warn about (or with strict, refuse) joins without quantizers; returns the lines."""
    if not uncovered:
        return []
    lines = [join.describe() for join in uncovered]
    message = ("{} join(s) of activations in the {} were not intercepted and have no "
               "quantizer: {}; write them as x + y, x - y, paddle.add/subtract/add_n/concat/"
               "stack called through the paddle module (see docs/residual_qat.md, 'Join "
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
        if hasattr(result, "name"):
            self.seen_outputs.add(result.name)
        return result

    def on_unquantizable_join(self, kind, form, operands):
        # Reported by discovery with a better message; not a second time here.
        if operands and hasattr(operands[0], "name"):
            self.seen_outputs.add(operands[0].name)


def trace_uncovered_joins(model, example_inputs):
    """Trace `model` (to_static, full graph) and return its UncoveredJoins.

    Raises whatever tracing raises; the caller decides whether that stops the run.
    """
    import paddle

    from slimext.quant.interception import handling

    if not paddle.in_dynamic_mode():
        raise RuntimeError("the coverage trace needs dygraph mode")
    recorder = CoverageRecorder()
    static_model = paddle.jit.to_static(model, full_graph=True)
    try:
        with handling(recorder):
            concrete, _ = static_model.forward.get_concrete_program(*example_inputs)
        program = concrete.main_program
        if not hasattr(program, "global_block") or not hasattr(program.global_block(), "ops") \
                or not hasattr(program, "desc"):
            raise RuntimeError("the traced program is not an old-IR program")
        seeds = [var.name for var in _flatten(concrete.inputs) if hasattr(var, "name")]
        return find_uncovered_joins(program, seeds, recorder.seen_outputs)
    finally:
        model.__dict__.pop("forward", None)  # back to the dygraph forward


def _flatten(value):
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _flatten(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _flatten(item)
    elif value is not None:
        yield value
