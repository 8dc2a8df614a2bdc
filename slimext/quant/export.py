"""Export a ResidualQAT model as a Paddle Inference QDQ program that INT8 passes accept.

Steps: trace with the join quantizers active -> drop fake-quant ops whose bit width the
backend cannot execute (that region stays float, with a warning) -> convert fake-quant
ops to quantize_linear/dequantize_linear with INT8 weight storage, on the integers the
model's weight quantizers compute (slimext.quant.weight_rounding) -> one scale per tensor
(slimext.quant.tensor_scales; the model's quantizers get the same values) -> put conv biases in the
form the runtime fuses (slimext.deploy.conv_bias) -> global average pools as a float mean
where the backend's INT8 pool would not match fake-quant (slimext.deploy.global_pool) ->
planned-float convs reading a quantized tensor read a float copy, so they stay fp32
(slimext.deploy.float_conv_inputs) ->
validate -> write to a temporary name
and rename into place, so an existing export survives any failure.
"""
import logging
import os

import paddle

from slimext.compat.program_editing import insert_op, remove_op, rename_input, sync_with_cpp
from slimext.compat.tracing import export_tracing
from slimext.deploy.conv_bias import fold_conv_biases
from slimext.deploy.float_conv_inputs import copy_float_conv_inputs
from slimext.deploy.global_pool import global_pools_as_mean
from slimext.fileio import atomic_write_json, move_into_place, staging_dir
from slimext.quant.apply import quantizer_key
from slimext.quant.backends import get_backend
from slimext.quant.quantizers import all_quantizers
from slimext.quant.tensor_scales import set_model_scales, unify_tensor_scales
from slimext.quant.weight_rounding import match_int8_weights, weights_from_model
from slimext.quant.validate import FAKE_QDQ_TYPES, SIDECAR, validate_program
from slimext.compat.quantizer_internals import (remove_act_preprocess, restore_act_preprocess,
                                                scale_tensor)

logger = logging.getLogger("slimext.export")


def _drop_fake_quant(program, fetch_targets, keep_bits):
    """Remove fake quant-dequant ops with unsupported bits; return the scale vars dropped."""
    dropped = []
    block = program.global_block()
    for index in reversed(range(len(block.ops))):
        op = block.ops[index]
        if op.type not in FAKE_QDQ_TYPES or op.attr("bit_length") in keep_bits:
            continue
        source, target = op.input("X")[0], op.output("Out")[0]
        for other in block.ops:
            if target in other.input_arg_names:
                rename_input(other, target, source)
        for i, var in enumerate(fetch_targets):
            if var.name == target:
                fetch_targets[i] = block.var(source)
        dropped.append((op.output("OutScale")[0], op.attr("bit_length")))
        remove_op(block, index)
    sync_with_cpp(program)
    return dropped


# Float weights oneDNN's QDQ pass reads as INT8: every persistable matmul/mul `Y`, and a
# conv filter whose values are all integers (its test for "already INT8").
CONSTANT_WEIGHT_SLOTS = {"matmul_v2": "Y", "matmul": "Y", "mul": "Y",
                         "conv2d": "Filter", "depthwise_conv2d": "Filter"}


def _store_constant_weights_as_int8(program, scope, place):
    """Give float weights the oneDNN INT8 pass would abort on an INT8 copy plus
    dequantize_linear; the op itself still runs in float.

    oneDNN's QDQ pass treats every persistable matmul/mul `Y` of a QDQ model, and every
    integer-valued conv filter, as an INT8 weight and aborts when it has no scale
    (PicoDet's distribution integral projects onto the buffer [0, 1, ..., reg_max];
    PP-YOLOE's DFL projection conv, which ppdet marks skip_quant, has that filter).
    Integer-valued constants in [-127, 127] get scale 127, which makes the dequantization
    exact; a conv filter gets a copy only then (slimext.quant.validate refuses the rest).

    Every op reading the constant gets its own INT8 copy: oneDNN's QDQ pass turns a
    dequantized weight back into one float variable, and matmul_v2_scale_fuse_pass then
    multiplies a following `scale` into that matmul's Y in place; a Y shared by several
    matmul+scale pairs (GFL's DFL projection, one per level, strides 8 to 128) took every
    level's stride (INT8 mAP 0).
    """
    import numpy as np

    block = program.global_block()
    producers = {name: op for op in block.ops for name in op.output_arg_names}
    converted, readers = [], {}
    for op in list(block.ops):
        slot = CONSTANT_WEIGHT_SLOTS.get(op.type)
        if slot is None:
            continue
        name = op.input(slot)[0]
        var = block.vars.get(name)
        if var is None or not var.persistable or name in producers:
            continue
        values = np.array(scope.find_var(name).get_tensor())
        exact = bool(np.all(values == np.round(values)) and np.abs(values).max() <= 127)
        if slot == "Filter" and not exact:
            continue  # a float filter the pass leaves alone, or one it cannot (refused)
        reader = readers.get(name, 0)
        readers[name] = reader + 1
        _dequantized_copy(block, scope, place, op, name, values, exact, reader)
        if reader == 0:
            converted.append({"weight": name, "op": op.type, "exact": exact})
    sync_with_cpp(program)
    return converted


def _dequantized_copy(block, scope, place, op, name, values, exact, reader):
    """`op` reads its own INT8 copy of the constant through a dequantize_linear:
    '<name>@int8' and '<name>@dequantized' for the first reader, '<name>@<k>@int8' ... for
    the k-th after it (what precedes the first '@' names the constant)."""
    import numpy as np

    scale = 127.0 if exact else float(np.abs(values).max() or 1.0)
    prefix = name if reader == 0 else "{}@{}".format(name, reader)
    int8_name, scale_name, zero_name = (prefix + "@" + kind
                                        for kind in ("int8", "scale", "zero"))
    for var_name, data in ((int8_name, np.round(values / scale * 127.0).astype("int8")),
                           (scale_name, np.array([scale], "float32")),
                           (zero_name, np.array([0], "int32"))):
        block.create_var(name=var_name, shape=data.shape, dtype=str(data.dtype),
                         persistable=True)
        scope.var(var_name).get_tensor().set(data, place)
    var = block.vars[name]
    dequantized = block.create_var(name=prefix + "@dequantized", shape=var.shape,
                                   dtype=var.dtype, persistable=False)
    insert_op(block, block.ops.index(op), type="dequantize_linear",
              inputs={"X": [int8_name], "Scale": [scale_name], "ZeroPoint": [zero_name]},
              outputs={"Y": [dequantized]}, attrs={"quant_axis": -1, "bit_length": 8})
    rename_input(op, name, dequantized.name)


def _to_qdq(program, scope, place):
    from paddle.base import core
    from paddle.base.framework import IrGraph
    from paddle.static.quantization import QuantWeightPass, ReplaceFakeQuantDequantPass

    graph = IrGraph(core.Graph(program.desc), for_test=True)
    ReplaceFakeQuantDequantPass(scope, place).apply(graph)
    QuantWeightPass(scope, place).apply(graph)
    return graph.to_program()


def _unwrap_static_forward(model):
    """Forget an earlier to_static trace (e.g. ppdet's input pruning) made without our
    quantizers, so the saved program is traced again with them."""
    from paddle.jit.dy2static.program_translator import StaticFunction

    forward = model.__dict__.get("forward")
    if isinstance(forward, StaticFunction):
        del model.__dict__["forward"]


def _scale_vars(plan, handler):
    return {spec.name: scale_tensor(handler.quantizers[quantizer_key(spec.name)]).name
            for spec in plan.quantizers.values()}


def export_quantized_model(model, path, input_spec, plan, handler, strict=False,
                           trace_spec=None):
    """Write `path`.pdmodel/.pdiparams (+ quant_plan.json beside them); returns a report.

    strict: a join of activations without quantizer refuses the export (else a warning).
    trace_spec: the inputs the forward is traced with when it reads more than the saved
    program takes (ppdet's pruned spec for a detector: input_spec); default input_spec.
    """
    with export_tracing():
        return _export(model, path, input_spec, plan, handler, strict,
                       trace_spec or input_spec)


def _export(model, path, input_spec, plan, handler, strict, trace_spec):
    backend = get_backend(plan.backend)
    out_dir = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    was_training = model.training
    model.eval()
    # PACT clipping is a training aid; the exported program uses the learned scales.
    preprocess = remove_act_preprocess(model)
    try:
        with staging_dir(out_dir, prefix=".export-") as staging:
            _unwrap_static_forward(model)
            with handler.forced(), handler.recording_outputs() as join_outputs:
                static_model = paddle.jit.to_static(model, input_spec=trace_spec,
                                                    full_graph=True)
                paddle.jit.save(static_model, os.path.join(staging, "traced"),
                                input_spec=input_spec)
            quantizers = {scale_tensor(q).name: (name, q) for name, q in
                          all_quantizers(model, plan).items() if not name.endswith("/weight")}
            report = _convert_and_validate(staging, base, plan, handler, backend,
                                           sorted(join_outputs), strict, quantizers,
                                           _float_layers(model, plan),
                                           weights_from_model(model))
            set_model_scales(report["tensor_scales_unified"], quantizers)
            move_into_place(staging, (base + ".pdmodel", base + ".pdiparams", SIDECAR), out_dir)
    finally:
        restore_act_preprocess(preprocess)
        _unwrap_static_forward(model)
        if was_training:
            model.train()
    return report


def _float_layers(model, plan):
    """The conv/linear layers the plan leaves float, with their weight's name: the INT8
    kernel report names them and says why they run fp32."""
    layers = dict(model.named_sublayers())
    found = []
    for layer in plan.layers:
        weight = getattr(layers.get(layer.path), "weight", None)
        if layer.skipped and weight is not None:
            found.append({"path": layer.path, "reason": layer.source, "weight": weight.name})
    return found


def _convert_and_validate(staging, base, plan, handler, backend, join_outputs, strict,
                          quantizers, float_layers, fake_weights):
    place = paddle.CPUPlace()
    scope = paddle.static.Scope()
    paddle.enable_static()
    try:
        with paddle.static.scope_guard(scope):
            exe = paddle.static.Executor(place)
            program, feeds, fetches = paddle.static.load_inference_model(
                os.path.join(staging, "traced"), exe)
            dropped = _drop_fake_quant(program, fetches, backend.executable_bits)
            for scale_var, bits in dropped:
                logger.warning("%s-bit quantizer %s cannot run on %s: that place is exported "
                               "in float", bits, scale_var, backend.name)
            program = _to_qdq(program, scope, place)
            weights_rounded = match_int8_weights(program, scope, place, fake_weights)
            unified = (unify_tensor_scales(program, scope, place, quantizers)
                       if backend.one_scale_per_tensor else [])
            constants = _store_constant_weights_as_int8(program, scope, place)
            folded_biases = fold_conv_biases(program)
            float_pools = global_pools_as_mean(program) if backend.global_pool_as_mean else 0
            float_conv_inputs = copy_float_conv_inputs(
                program, {layer["weight"] for layer in float_layers})
            scale_vars = _scale_vars(plan, handler)
            report = validate_program(program, scope, plan, scale_vars, backend,
                                      join_outputs=join_outputs, strict=strict)
            report["float_regions"] = [{"scale": s, "bits": b} for s, b in dropped]
            report["int8_constants"] = constants
            report["conv_biases_folded"] = folded_biases
            report["global_pools_as_mean"] = float_pools
            report["float_conv_inputs_copied"] = float_conv_inputs
            report["tensor_scales_unified"] = unified
            report["float_layers"] = float_layers
            report["weight_elements_rounded_as_model"] = weights_rounded
            paddle.static.save_inference_model(
                os.path.join(staging, base),
                [program.global_block().var(n) for n in feeds], fetches, exe,
                program=program, clip_extra=True)
        sidecar = {"backend": backend.name, "scale_vars": scale_vars,
                   "plan": plan.to_dict(), "report": report,
                   "join_outputs": join_outputs, "strict": strict}
        atomic_write_json(os.path.join(staging, SIDECAR), sidecar, indent=1, default=str)
    finally:
        paddle.disable_static()
    return report
