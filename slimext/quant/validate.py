"""Check a QDQ inference program before anyone deploys it.

Refused: a scale that is zero, negative or not finite; a shared-scale group whose places
are missing from the program; a planned join quantizer that never made it into the
program; a weight-quantized conv/matmul whose activation input has no scale; a float
weight that Paddle's oneDNN INT8 pass would take for an INT8 one and abort on (below); a
bit width the backend cannot execute; with strict, a join of activations that interception
never saw (no quantizer, no rule keeping it float; a warning otherwise, see
slimext.quant.coverage).

Every export is checked against the oneDNN pass, whatever its backend: Paddle Inference's
INT8 predictor on CPU is where any QDQ export can be run. That pass
(quant_dequant_onednn_pass) reads a program with INT8 weights as a whole: a persistable
conv filter or matmul/mul `Y` without dequantize_linear whose values are all integers
counts as an INT8 weight, and having no scale for it ends predictor creation with "Could
not find threshold information for [<weight>] var". A float filter with any fractional
value is left in float.
"""
import json
import logging
import os

import numpy as np

from slimext.quant.backends import get_backend
from slimext.quant.coverage import JoinCoverageError, find_uncovered_joins, report_uncovered

# Written beside an export: the plan, the scale variable of each quantizer, the report.
SIDECAR = "quant_plan.json"

FAKE_QDQ_TYPES = ("fake_quantize_dequantize_moving_average_abs_max",
                  "fake_quantize_dequantize_abs_max",
                  "fake_channel_wise_quantize_dequantize_abs_max")
QDQ_TYPES = ("quantize_linear", "dequantize_linear")
WEIGHTED_OPS = {"conv2d": ("Input", "Filter"), "depthwise_conv2d": ("Input", "Filter"),
                "conv2d_transpose": ("Input", "Filter"), "matmul_v2": ("X", "Y"),
                "matmul": ("X", "Y"), "mul": ("X", "Y")}


# Weighted ops whose weight oneDNN's INT8 pass dequantizes (and aborts on without a scale).
ONEDNN_WEIGHT_SLOTS = {"conv2d": "Filter", "depthwise_conv2d": "Filter",
                       "fused_conv2d": "Filter", "matmul_v2": "Y", "matmul": "Y", "mul": "Y"}

# Suffix of the INT8 copies export makes of float constants used as matmul/conv weights.
CONSTANT_SUFFIX = "@int8"

logger = logging.getLogger("slimext.validate")


class ExportValidationError(RuntimeError):
    """The exported program would not run correctly in INT8; the message lists why."""

    def __init__(self, problems):
        self.problems = problems
        super().__init__("quantized export refused ({} problem(s)):\n  - {}".format(
            len(problems), "\n  - ".join(problems)))


def _producers(block):
    return {name: op for op in block.ops for name in op.output_arg_names}


def _scale_value(scope, name):
    var = scope.find_var(name)
    if var is None:
        return None
    return np.array(var.get_tensor())


def _feed_names(block):
    return [name for op in block.ops if op.type == "feed" for name in op.output_arg_names]


def validate_program(program, scope, plan, scale_vars, backend, join_outputs=None,
                     strict=False):
    """Problems raise ExportValidationError; returns a report dict.

    join_outputs: names of the join outputs interception traced; with them, joins of
    activations it never saw are reported (strict: refused).
    """
    block = program.global_block()
    problems = []
    producers = _producers(block)
    qdq_ops = [op for op in block.ops if op.type in QDQ_TYPES]
    scale_uses = {}
    for op in qdq_ops:
        scale_name = op.input("Scale")[0]
        if op.attr("bit_length") not in backend.executable_bits:
            problems.append("{} on {} has {} bits; {} executes {} bits".format(
                op.type, op.input("X")[0], op.attr("bit_length"), backend.name,
                "/".join(map(str, backend.executable_bits))))
        value = _scale_value(scope, scale_name)
        if value is None:
            problems.append("{} on {} has no scale tensor {}".format(
                op.type, op.input("X")[0], scale_name))
        elif not np.all(np.isfinite(value)) or np.any(value <= 0):
            problems.append("scale {} of {} is not finite and positive (min {})".format(
                scale_name, op.input("X")[0], float(np.nanmin(value)) if value.size else "empty"))
        if op.type == "quantize_linear":
            scale_uses[scale_name] = scale_uses.get(scale_name, 0) + 1

    for spec in plan.quantizers.values():
        if spec.bits not in backend.executable_bits:
            continue  # exported as float on purpose
        uses = scale_uses.get(scale_vars.get(spec.name), 0)
        if uses == 0:
            problems.append("join quantizer {} is missing from the program".format(spec.name))
        elif spec.shared and uses < len(spec.members):
            problems.append("shared group {} has {} of its {} places in the program".format(
                spec.name, uses, len(spec.members)))

    for op in block.ops:
        slots = WEIGHTED_OPS.get(op.type)
        if slots is None:
            continue
        weight = producers.get(op.input(slots[1])[0])
        if weight is None or weight.type != "dequantize_linear":
            continue
        if weight.input("X")[0].endswith(CONSTANT_SUFFIX):
            continue  # an exact INT8 copy of a constant; the op itself runs in float
        activation = producers.get(op.input(slots[0])[0])
        if activation is None or activation.type != "dequantize_linear":
            problems.append("{} with INT8 weight {} has no scale on its input {}".format(
                op.type, op.input(slots[1])[0], op.input(slots[0])[0]))

    problems.extend(_weights_onednn_aborts_on(block, scope, producers))
    int8_weights = {op.input("X")[0] for op in qdq_ops if op.type == "dequantize_linear"
                    and producers.get(op.input("X")[0]) is None
                    and not op.input("X")[0].endswith(CONSTANT_SUFFIX)}
    planned = len([layer for layer in plan.layers if not layer.skipped])
    if len(int8_weights) < planned:
        # A layer called outside its wrapper (or never called) keeps a float weight.
        logger.warning("the plan quantizes %d conv/linear layers; the program has INT8 "
                       "weights for %d of them (the rest run float: a layer called outside "
                       "its wrapper, or not called at all)", planned, len(int8_weights))

    uncovered = []
    if join_outputs is not None:
        joins = find_uncovered_joins(program, _feed_names(block), set(join_outputs))
        try:
            uncovered = report_uncovered(joins, "exported program", strict)
        except JoinCoverageError as error:
            problems.append(str(error))
    if problems:
        raise ExportValidationError(problems)
    return {"qdq_pairs": len(qdq_ops) // 2, "int8_weights": len(int8_weights),
            "planned_layers": planned, "join_quantizers": len(plan.quantizers),
            "shared_groups": len(plan.shared_groups), "uncovered_joins": uncovered}


def _weights_onednn_aborts_on(block, scope, producers):
    """Float weights oneDNN's INT8 pass would take for INT8 weights without a scale."""
    has_int8_weights = any(op.type == "dequantize_linear" and _is_constant(block, producers,
                                                                          op.input("X")[0])
                           for op in block.ops)
    if not has_int8_weights:
        return []  # the pass dequantizes weights only in a program that has INT8 ones
    problems, seen = [], set()
    for op in block.ops:
        slot = ONEDNN_WEIGHT_SLOTS.get(op.type)
        if slot is None:
            continue
        name = op.input(slot)[0]
        if name in seen or not _is_constant(block, producers, name):
            continue
        seen.add(name)
        values = _scale_value(scope, name)
        if values is None or values.size == 0 or not np.all(values == np.round(values)):
            continue
        problems.append(
            "{} reads the float weight {} (integer values, largest {:g}) without a "
            "dequantize_linear: Paddle's oneDNN INT8 pass takes it for an INT8 weight "
            "without scale and aborts at predictor creation (\"Could not find threshold "
            "information for [{}] var\"). Fix: quantize that layer (a rule with skip: "
            "false), or keep it float with a weight in [-127, 127], which the export "
            "stores as an exact INT8 copy".format(op.type, name, float(np.abs(values).max()),
                                                 name))
    return problems


def _is_constant(block, producers, name):
    var = block.vars.get(name)
    return var is not None and var.persistable and name not in producers


def validate_saved_model(path_prefix):
    """Validate an exported model on disk (uses the quant_plan.json written beside it)."""
    import paddle

    from slimext.compat.tracing import export_tracing
    from slimext.quant.plan import plan_from_dict

    sidecar_path = os.path.join(os.path.dirname(os.path.abspath(path_prefix)), SIDECAR)
    with open(sidecar_path) as f:
        sidecar = json.load(f)
    plan = plan_from_dict(sidecar["plan"])
    scope = paddle.static.Scope()
    with export_tracing():  # the export is an old-IR program
        paddle.enable_static()
        try:
            with paddle.static.scope_guard(scope):
                exe = paddle.static.Executor(paddle.CPUPlace())
                program, _, _ = paddle.static.load_inference_model(path_prefix, exe)
                return validate_program(program, scope, plan, sidecar["scale_vars"],
                                        get_backend(sidecar["backend"]),
                                        join_outputs=sidecar.get("join_outputs"),
                                        strict=sidecar.get("strict", False))
        finally:
            paddle.disable_static()
