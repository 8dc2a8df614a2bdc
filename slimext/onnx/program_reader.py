"""An exported old-IR program as plain data: its ops, variable shapes and parameter values.

The converter reads the validated `model.pdmodel` + `model.pdiparams` the way the export's
validator does (old IR on Paddle 3, see slimext.compat.tracing), copies what it needs into
Python objects, and leaves Paddle's static mode before converting anything.
"""
import os
from dataclasses import dataclass, field

import numpy as np

# Op attributes that describe where an op came from, not what it computes.
_BOOKKEEPING_ATTRS = ("op_callstack", "op_namescope", "op_role", "op_role_var", "op_device",
                      "with_quant_attr", "use_mkldnn", "use_cudnn", "mkldnn_data_type",
                      "use_quantizer", "is_test", "name")


@dataclass
class ProgramOp:
    type: str
    inputs: dict       # slot -> [variable names]
    outputs: dict      # slot -> [variable names]
    attrs: dict

    def input(self, slot):
        """The one variable of an input slot, or None when the slot is empty."""
        names = self.inputs.get(slot) or []
        return names[0] if names else None

    def output(self, slot):
        names = self.outputs.get(slot) or []
        return names[0] if names else None


@dataclass
class ExportedProgram:
    ops: list                      # ProgramOp, in execution order (no feed/fetch)
    feeds: list                    # input variable names, in feed order
    fetches: list                  # output variable names, in fetch order
    shapes: dict                   # variable name -> shape tuple (-1 where unknown)
    dtypes: dict                   # variable name -> numpy dtype
    params: dict = field(default_factory=dict)   # persistable name -> numpy array
    source: str = ""

    def consumers(self, name):
        return [op for op in self.ops if any(name in names for names in op.inputs.values())]


def model_prefix(model_dir_or_prefix):
    """'EXPORT/model' for an export folder; a path prefix stays as it is."""
    if os.path.isdir(model_dir_or_prefix):
        return os.path.join(model_dir_or_prefix, "model")
    return model_dir_or_prefix


def check_export_files(prefix):
    if not os.path.exists(os.path.dirname(prefix) or "."):
        raise FileNotFoundError("export folder {!r} does not exist".format(
            os.path.dirname(prefix)))
    for suffix in (".pdmodel", ".pdiparams"):
        if not os.path.isfile(prefix + suffix):
            raise FileNotFoundError("{}{} does not exist (give an export folder written by "
                                    "tools/export_model.py or tools/post_quant.py)"
                                    .format(prefix, suffix))


def read_program(model_dir_or_prefix):
    """Load the export's program and parameters into an ExportedProgram."""
    import paddle

    from slimext.compat.inference import check_program_readable
    from slimext.compat.tracing import export_tracing

    prefix = model_prefix(model_dir_or_prefix)
    check_export_files(prefix)
    check_program_readable(prefix + ".pdmodel")
    scope = paddle.static.Scope()
    with export_tracing():  # exports are old-IR programs
        paddle.enable_static()
        try:
            with paddle.static.scope_guard(scope):
                exe = paddle.static.Executor(paddle.CPUPlace())
                program, feeds, fetch_vars = paddle.static.load_inference_model(prefix, exe)
                return _as_data(program, scope, feeds, [v.name for v in fetch_vars], prefix)
        finally:
            paddle.disable_static()


def _as_data(program, scope, feeds, fetches, source):
    block = program.global_block()
    if program.num_blocks > 1:
        raise ValueError("{} has {} blocks (control flow); only single-block programs convert"
                         .format(source, program.num_blocks))
    ops, shapes, dtypes, params = [], {}, {}, {}
    for op in block.ops:
        if op.type in ("feed", "fetch"):
            continue
        attrs = {name: op.attr(name) for name in op.attr_names
                 if name not in _BOOKKEEPING_ATTRS}
        ops.append(ProgramOp(op.type, {slot: list(op.input(slot)) for slot in op.input_names},
                             {slot: list(op.output(slot)) for slot in op.output_names}, attrs))
    for name, var in block.vars.items():
        if name in ("feed", "fetch"):
            continue
        try:
            shapes[name] = tuple(int(d) for d in var.shape)
            dtypes[name] = _numpy_dtype(var.dtype)
        except (ValueError, TypeError, AttributeError):
            continue   # a variable kind without a dense shape (e.g. a reader)
        if var.persistable:
            holder = scope.find_var(name)
            if holder is not None:
                params[name] = np.array(holder.get_tensor())
    return ExportedProgram(ops, list(feeds), list(fetches), shapes, dtypes, params, source)


def _numpy_dtype(paddle_dtype):
    # 'paddle.float32' (Paddle 3) or 'VarType.FP32' (Paddle 2.6)
    text = str(paddle_dtype).replace("paddle.", "").replace("VarType.", "").lower()
    table = {"fp32": "float32", "fp64": "float64", "fp16": "float16", "bool": "bool"}
    text = table.get(text, text)
    if text not in ("float32", "float64", "float16", "int8", "uint8", "int16", "int32",
                    "int64", "bool"):
        raise ValueError("variable dtype {} has no numpy equivalent".format(paddle_dtype))
    return np.dtype(text)
