"""What the ONNX tests share: ONNX Runtime sessions, raw-output copies of exports, errors."""
import os
import shutil

import numpy as np
import paddle

from slimext.compat.tracing import export_tracing

ONNX_ABSENT = os.environ.get("SLIMEXT_ONNX_ABSENT") == "1"
if not ONNX_ABSENT:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as error:
        raise ImportError("onnx and onnxruntime are part of the test install: pip install -r "
                          "requirements-onnx.txt (or set SLIMEXT_ONNX_ABSENT=1 where they are "
                          "left out on purpose)") from error


def ort_session(model, optimize=True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    if not optimize:   # every node as written: the graph's own arithmetic
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def run_session(session, inputs):
    return session.run(None, {i.name: inputs[i.name] for i in session.get_inputs()})


def relative_error(output, reference):
    """max |output - reference| over the reference's largest magnitude."""
    return float(np.abs(output.astype(np.float64) - reference).max() /
                 max(float(np.abs(reference).max()), 1e-12))


def copy_with_nms_inputs_as_outputs(model_dir, out_dir):
    """A copy of an export whose outputs are what its NMS reads (raw boxes, scores): the raw
    outputs to compare, from exports that end in NMS."""
    prefix = os.path.join(model_dir, "model")
    with export_tracing():   # exports are old-IR programs
        paddle.enable_static()
        try:
            scope = paddle.static.Scope()
            with paddle.static.scope_guard(scope):
                exe = paddle.static.Executor(paddle.CPUPlace())
                program, feeds, _ = paddle.static.load_inference_model(prefix, exe)
                block = program.global_block()
                nms = [op for op in block.ops if op.type == "multiclass_nms3"][0]
                targets = [block.var(nms.input("BBoxes")[0]), block.var(nms.input("Scores")[0])]
                # Paddle 2.6's save names the output scale ops it appends from a counter
                # that the loaded program's own ones already used.
                with paddle.utils.unique_name.guard("raw_"):
                    paddle.static.save_inference_model(
                        os.path.join(out_dir, "model"), [block.var(n) for n in feeds],
                        targets, exe, program=program)
        finally:
            paddle.disable_static()
    for name in os.listdir(model_dir):
        if not name.startswith("model."):
            shutil.copy(os.path.join(model_dir, name), out_dir)
    return out_dir
