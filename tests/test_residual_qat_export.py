"""ResidualQAT end to end on small real models: train steps, export, validate, run INT8."""
import os
import shutil
import subprocess
import sys

import numpy as np
import paddle
import pytest

from quant_models import GatedNet, MixedJoins, ResidualNet, example_input, train_steps
from slimext.compat.tracing import export_tracing
from slimext.quant import ExportValidationError, QATQuantizer, validate_saved_model

INPUT_SPEC = [paddle.static.InputSpec([1, 3, 32, 32], "float32", "x")]


def quantize_and_train(model, backend="onednn", rules=None):
    qat = QATQuantizer(backend=backend, rules=rules)
    model = qat(model, example_inputs=[example_input()])
    return qat, train_steps(model)


@pytest.fixture(scope="module")
def residual_export(tmp_path_factory):
    paddle.seed(0)
    qat, model = quantize_and_train(ResidualNet())
    prefix = str(tmp_path_factory.mktemp("residual") / "model")
    report = qat.save_quantized_model(model, prefix, input_spec=INPUT_SPEC)
    reference = model(example_input()).numpy()
    return qat, prefix, report, reference


RUN_INT8 = """
import sys, numpy as np
from paddle import inference
from slimext.compat.inference import use_int8_capable_pipeline
config = inference.Config(sys.argv[1] + ".pdmodel", sys.argv[1] + ".pdiparams")
config.disable_gpu(); config.set_cpu_math_library_num_threads(1)
config.enable_mkldnn(); config.enable_mkldnn_int8()
use_int8_capable_pipeline(config)
if len(sys.argv) > 4:  # the pipeline the fix avoids
    config.enable_new_ir(True)
predictor = inference.create_predictor(config)
x = np.load(sys.argv[2])
predictor.get_input_handle(predictor.get_input_names()[0]).copy_from_cpu(x)
predictor.run()
np.save(sys.argv[3], predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu())
"""


def run_int8_process(prefix, tmp_path, *extra):
    x_path, out_path = str(tmp_path / "x.npy"), str(tmp_path / "out.npy")
    np.save(x_path, example_input().numpy())
    result = subprocess.run([sys.executable, "-c", RUN_INT8, prefix, x_path, out_path] +
                            list(extra), capture_output=True, text=True, timeout=300)
    return result, out_path


def run_int8(prefix, tmp_path):
    """Run the export in oneDNN INT8 in a fresh process; return (output, pass log)."""
    result, out_path = run_int8_process(prefix, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return np.load(out_path), result.stdout + result.stderr


def test_int8_runs_only_on_the_pipeline_the_compat_setting_keeps(residual_export, tmp_path):
    from slimext.compat.versions import paddle_at_least

    _, prefix, _, _ = residual_export
    result, _ = run_int8_process(prefix, tmp_path, "new-ir")
    log = result.stdout + result.stderr
    if paddle_at_least(3, 0, 0):  # Paddle 3's PIR pipeline: no oneDNN INT8 passes
        assert result.returncode != 0 or "fused_conv2d ops with residual" not in log
    _, kept = run_int8(prefix, tmp_path)
    assert "fused_conv2d ops with residual" in kept


def test_export_has_every_join_quantizer_and_int8_weights(residual_export):
    qat, prefix, report, _ = residual_export
    assert report["join_quantizers"] == len(qat.plan.quantizers) == 6
    assert report["int8_weights"] == 6  # stem, 2 x 2 block convs, head
    assert os.path.getsize(prefix + ".pdiparams") > 0
    assert validate_saved_model(prefix)["qdq_pairs"] == report["qdq_pairs"]


def test_onednn_int8_fuses_conv_with_residual_add(residual_export, tmp_path):
    _, prefix, _, reference = residual_export
    output, log = run_int8(prefix, tmp_path)
    fused = [line for line in log.splitlines() if "fused_conv2d ops with residual" in line]
    assert fused and any(" 2 fused_conv2d ops with residual" in line for line in fused), log[-2000:]
    # INT8 execution tracks the fake-quant model it was trained as.
    scale = np.abs(reference).max()
    assert np.abs(output - reference).max() < 0.25 * scale


def _int8_multiplies(log):
    import re

    counts = re.findall(r"quantized (\d+) (?:fused_)?elementwise_mul ops", log)
    assert counts, log[-3000:]
    return int(counts[-1])


def test_se_gate_runs_int8_and_tracks_the_fake_quant_model(tmp_path):
    paddle.seed(0)
    qat, model = quantize_and_train(GatedNet())
    prefix = str(tmp_path / "model")
    report = qat.save_quantized_model(model, prefix, input_spec=INPUT_SPEC)
    assert report["conv_biases_folded"] == 5   # stem, SE reduce/expand, mix, head
    output, log = run_int8(prefix, tmp_path)
    assert _int8_multiplies(log) == 1          # the gate; the product of maps stays float
    reference = model(example_input()).numpy()
    assert np.abs(output - reference).max() < 0.05 * np.abs(reference).max()


def test_a_gate_skipped_by_rule_runs_float(tmp_path):
    paddle.seed(0)
    qat, model = quantize_and_train(GatedNet(), rules=[{"type": "gate", "skip": True}])
    prefix = str(tmp_path / "model")
    qat.save_quantized_model(model, prefix, input_spec=INPUT_SPEC)
    _, log = run_int8(prefix, tmp_path)
    assert _int8_multiplies(log) == 0


def test_shared_groups_export_one_scale(tmp_path):
    paddle.seed(0)
    qat, model = quantize_and_train(MixedJoins())
    prefix = str(tmp_path / "model")
    qat.save_quantized_model(model, prefix, input_spec=INPUT_SPEC)
    group = qat.plan.quantizers["<model>:concat#0/shared"]
    scale_var = qat.quantizer(group.name)._scale.name
    with export_tracing():  # exports are old-IR programs
        paddle.enable_static()
        try:
            exe = paddle.static.Executor(paddle.CPUPlace())
            program, _, _ = paddle.static.load_inference_model(prefix, exe)
            uses = [op for op in program.global_block().ops if op.type == "quantize_linear"
                    and op.input("Scale")[0] == scale_var]
            value = np.array(paddle.static.global_scope().find_var(scale_var).get_tensor())
        finally:
            paddle.disable_static()
    assert len(uses) == len(group.members) == 3
    assert value.item() == pytest.approx(qat.quantizer(group.name)._scale.numpy().item())


def test_resume_restores_join_scales_exactly(tmp_path):
    paddle.seed(0)
    qat, model = quantize_and_train(ResidualNet())
    path = str(tmp_path / "ckpt.pdparams")
    paddle.save(model.state_dict(), path)
    saved = {k: v.numpy().copy() for k, v in model.state_dict().items()
             if "slimext_join_quantizers" in k}
    assert saved and all(v.size == 1 for v in saved.values())

    paddle.seed(1)
    fresh_qat = QATQuantizer(backend="onednn")
    fresh = fresh_qat(ResidualNet(), example_inputs=[example_input()])
    fresh.set_state_dict(paddle.load(path))
    fresh.eval()
    restored = {k: v.numpy() for k, v in fresh.state_dict().items() if k in saved}
    assert restored.keys() == saved.keys()
    for key in saved:
        assert np.array_equal(restored[key], saved[key]), key
    assert np.allclose(fresh(example_input()).numpy(), model(example_input()).numpy(),
                       atol=1e-5)


def _tamper(prefix, mutate):
    """Rewrite an export with mutate(program, scope) applied (as a broken tool would)."""
    with export_tracing():  # exports are old-IR programs
        paddle.enable_static()
        try:
            scope = paddle.static.Scope()
            with paddle.static.scope_guard(scope):
                exe = paddle.static.Executor(paddle.CPUPlace())
                program, feeds, fetches = paddle.static.load_inference_model(prefix, exe)
                mutate(program, scope)
                paddle.static.save_inference_model(
                    prefix, [program.global_block().var(n) for n in feeds], fetches, exe,
                    program=program)
        finally:
            paddle.disable_static()


def _copy_export(prefix, tmp_path):
    """A copy of the export (program, params, plan sidecar) that a test may damage."""
    copy_prefix = str(tmp_path / "model")
    for suffix in (".pdmodel", ".pdiparams"):
        shutil.copyfile(prefix + suffix, copy_prefix + suffix)
    shutil.copyfile(os.path.join(os.path.dirname(prefix), "quant_plan.json"),
                    str(tmp_path / "quant_plan.json"))
    return copy_prefix


def _first_activation_scale(program):
    # Weights are stored INT8 with only a dequantize_linear; quantize_linear is activations.
    return next(op.input("Scale")[0] for op in program.global_block().ops
                if op.type == "quantize_linear")


@pytest.mark.parametrize("bad_value, message", [(0.0, "not finite and positive"),
                                                (float("nan"), "not finite and positive")])
def test_validator_rejects_tampered_scale(residual_export, tmp_path, bad_value, message):
    _, prefix, _, _ = residual_export
    copy_prefix = _copy_export(prefix, tmp_path)

    def zero_scale(program, scope):
        name = _first_activation_scale(program)
        scope.find_var(name).get_tensor().set(np.array([bad_value], "float32"),
                                              paddle.CPUPlace())

    _tamper(copy_prefix, zero_scale)
    with pytest.raises(ExportValidationError, match=message):
        validate_saved_model(copy_prefix)


def test_validator_rejects_missing_join_scale(residual_export, tmp_path):
    _, prefix, _, _ = residual_export
    copy_prefix = _copy_export(prefix, tmp_path)

    def drop_join_qdq(program, scope):
        block = program.global_block()
        for index, op in enumerate(block.ops):
            if op.type == "quantize_linear" and "add_0_out" in op.input("Scale")[0]:
                dequant = block.ops[index + 1]
                source, target = op.input("X")[0], dequant.output("Y")[0]
                for other in block.ops:
                    if target in other.input_arg_names:
                        other._rename_input(target, source)
                block._remove_op(index + 1)
                block._remove_op(index)
                break
        program._sync_with_cpp()

    _tamper(copy_prefix, drop_join_qdq)
    with pytest.raises(ExportValidationError, match="missing from the program"):
        validate_saved_model(copy_prefix)


def test_16_bit_join_trains_at_16_and_exports_as_float_on_onednn(tmp_path):
    paddle.seed(0)
    rule = [{"match": "blocks.0:add#0", "activation_bits": 16}]
    qat, model = quantize_and_train(ResidualNet(), rules=rule)
    assert qat.quantizer("blocks.0:add#0/out")._quant_bits == 16
    assert qat.quantizer("blocks.1:add#0/out")._quant_bits == 8
    report = qat.save_quantized_model(model, str(tmp_path / "model"), input_spec=INPUT_SPEC)
    assert len(report["float_regions"]) == 3 and all(r["bits"] == 16
                                                     for r in report["float_regions"])
    output, _ = run_int8(str(tmp_path / "model"), tmp_path)
    assert np.all(np.isfinite(output))


def test_pact_trains_then_exports_with_learned_scales(tmp_path):
    paddle.seed(0)
    qat = QATQuantizer(backend="onednn", quant_config={"activation_preprocess_type": "PACT"})
    model = qat(ResidualNet(), example_inputs=[example_input()])
    pact = [layer for layer in model.sublayers()
            if getattr(layer, "_act_preprocess", None) is not None]
    assert pact, "PACT asked for but no layer got a clipping preprocess"
    model = train_steps(model)
    prefix = str(tmp_path / "model")
    report = qat.save_quantized_model(model, prefix, input_spec=INPUT_SPEC)
    # Export drops the clipping op for the program but gives the layers their PACT back.
    assert all(layer._act_preprocess is not None for layer in pact)
    with export_tracing():  # exports are old-IR programs
        paddle.enable_static()
        try:
            program, _, _ = paddle.static.load_inference_model(
                prefix, paddle.static.Executor(paddle.CPUPlace()))
            names = [n for op in program.global_block().ops
                     for n in op.input_arg_names + op.output_arg_names]
        finally:
            paddle.disable_static()
    assert names and not [n for n in names if "pact" in n.lower()]
    assert validate_saved_model(prefix)["qdq_pairs"] == report["qdq_pairs"]
    output, _ = run_int8(prefix, tmp_path)
    model.eval()
    reference = model(example_input()).numpy()
    assert np.abs(output - reference).max() < 0.25 * np.abs(reference).max()
