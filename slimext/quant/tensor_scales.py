"""One scale per tensor: give every quantizer that reads the same tensor one scale at export.

The fake-quant model may quantize one tensor with several scales: a conv output that feeds
a concat (the concat's shared scale) and the next conv (that conv's input quantizer), or a
`split` whose halves go to two quantizers. The INT8 runtimes keep one scale per variable
(oneDNN drops each QDQ pair and tags the variable with its scale; TensorRT turns it into
the tensor's dynamic range) and run split/reshape/transpose/concat/max-pool/nearest
upsampling on int8 data with that one scale. The consumer whose scale lost then reads the
tensor on another grid than training simulated: in an ESNet block the depthwise conv read
its input on the concat's scale. Each such difference is within one quantization step, and
a deep network compounds them.

`unify_tensor_scales` finds the tensors (through QDQ pairs and those scale-preserving ops)
that carry different activation scales, sets all their quantizers to the largest of those
scales (so nothing clips that did not clip before) in the program and in the model, and
returns what it changed. The model and its export then compute the same numbers; another
instance of the model (built from the same checkpoint) takes them with `apply_export_scales`.
"""
import logging

import numpy as np

from slimext.compat.quantizer_internals import (is_moving_average, moving_average_state,
                                                scale_tensor)

logger = logging.getLogger("slimext.export")

# Ops the INT8 runtimes execute on int8 data with the input's scale on every output.
SCALE_PRESERVING_OPS = ("split", "reshape2", "transpose2", "concat", "slice",
                        "nearest_interp", "nearest_interp_v2", "squeeze2", "unsqueeze2",
                        "flatten2", "flatten_contiguous_range")


def _scale_preserving(op):
    if op.type == "pool2d":
        return op.attr("pooling_type") == "max"
    return op.type in SCALE_PRESERVING_OPS


class _Groups:
    """Union-find over variable names."""

    def __init__(self):
        self.parent = {}

    def find(self, name):
        self.parent.setdefault(name, name)
        while self.parent[name] != name:
            self.parent[name] = self.parent[self.parent[name]]
            name = self.parent[name]
        return name

    def union(self, a, b):
        self.parent[self.find(a)] = self.find(b)


def _data_args(op, slot_names):
    return [name for slot in slot_names if slot in op.input_names for name in op.input(slot)]


def _links_inputs(op, quantized_inputs):
    """Whether the op puts all its inputs on its output's scale. A one-input op does; a
    concat only when its output is quantized (a planned join): an unplanned one (boxes of
    all levels gathered for NMS) runs in float or requantizes each input to its output's
    scale, so its inputs keep their own scales."""
    if op.type != "concat" or len(op.input("X")) < 2:
        return True
    return op.output("Out")[0] in quantized_inputs


def tensor_scale_groups(program):
    """[(tensor names, activation scale var names)] for every group of variables the
    runtime gives one scale, in program order."""
    block = program.global_block()
    groups = _Groups()
    quantized_inputs = {op.input("X")[0] for op in block.ops if op.type == "quantize_linear"}
    quantized = []   # (input var, scale var) of every activation quantize_linear
    for op in block.ops:
        if op.type == "quantize_linear":
            source = op.input("X")[0]
            var = block._find_var_recursive(source)
            if var is not None and var.persistable:
                continue
            groups.union(op.output("Y")[0], source)
            quantized.append((source, op.input("Scale")[0]))
        elif op.type == "dequantize_linear":
            groups.union(op.output("Y")[0], op.input("X")[0])
        elif _scale_preserving(op) and _links_inputs(op, quantized_inputs):
            outputs = op.output("Out")
            for name in _data_args(op, ("X",)) + outputs[1:]:
                groups.union(name, outputs[0])
    by_root, order = {}, []
    for source, scale in quantized:
        root = groups.find(source)
        if root not in by_root:
            by_root[root] = ([], [])
            order.append(root)
        tensors, scales = by_root[root]
        if source not in tensors:
            tensors.append(source)
        if scale not in scales:
            scales.append(scale)
    return [by_root[root] for root in order]


def _set_model_scale(quantizer, value):
    scale = scale_tensor(quantizer)
    scale.set_value(np.full(scale.shape, value, dtype="float32"))
    if is_moving_average(quantizer):
        # Keep scale == accum / state, so training resumed from here starts at this scale.
        _, state, accum = moving_average_state(quantizer)
        accum.set_value(np.asarray(state.numpy(), dtype="float32") * value)


def unify_tensor_scales(program, scope, place, quantizers):
    """Give each tensor group of the program one scale (the largest); quantizers: {scale
    var name: (quantizer name, fake-quant layer)} of the model being exported, for the
    names. Returns the changes; `set_model_scales` applies them to the model."""
    changes = []
    for tensors, scale_names in tensor_scale_groups(program):
        values = [float(np.array(scope.find_var(name).get_tensor()).ravel()[0])
                  for name in scale_names]
        if len(set(values)) < 2:
            continue
        unified = max(values)
        for name in scale_names:
            scope.find_var(name).get_tensor().set(np.array([unified], "float32"), place)
        changes.append({"tensors": tensors, "scale_vars": scale_names,
                        "quantizers": [quantizers.get(n, (n,))[0] for n in scale_names],
                        "scales": values, "scale": unified})
    if changes:
        logger.info("%d tensor(s) had quantizers with different scales; the INT8 runtime "
                    "keeps one scale per tensor, so each now uses its largest (first: %s "
                    "%s -> %.4g)", len(changes), changes[0]["tensors"][0],
                    changes[0]["quantizers"], changes[0]["scale"])
    return changes


def set_model_scales(changes, quantizers):
    """Set the model's quantizers to the scales `unify_tensor_scales` gave the program
    (in dygraph mode), so the fake-quant model computes what its export computes."""
    for change in changes:
        for name in change["scale_vars"]:
            if name in quantizers:
                _set_model_scale(quantizers[name][1], change["scale"])


def apply_export_scales(model, plan, changes):
    """Give `model` the one-scale-per-tensor values an export of its checkpoint chose
    (`changes`: the export report's `tensor_scales_unified`); how many quantizers were set.

    An export made from a checkpoint (tools/export_model.py, `pipeline.export`) builds its
    own model, so `set_model_scales` reaches only that instance: a fake-quant model built
    beside it (evaluation, an agreement check) keeps each quantizer's own scale and computes
    other numbers than the export (PP-YOLOE+ s: 1.09 of the top score apart, random
    weights). Quantizers are matched by their plan names.
    """
    from slimext.quant.quantizers import all_quantizers

    named = all_quantizers(model, plan)
    missing = sorted({name for change in changes for name in change["quantizers"]
                      if name not in named})
    if missing:
        raise ValueError("the model has no quantizer named {} (first of {}): apply the "
                         "scales of an export of this model's own plan".format(
                             missing[0], len(missing)))
    count = 0
    for change in changes:
        for name in change["quantizers"]:
            _set_model_scale(named[name], change["scale"])
            count += 1
    return count
