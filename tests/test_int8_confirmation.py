"""An INT8 run proves it used INT8 kernels; pass logs stay off the console unless asked."""
import os

import numpy as np
import pytest

from conftest import run_tool
from slimext.deploy.int8_kernels import (Int8NotUsedError, confirm_int8, is_qdq_program,
                                         paddle_int8_report)
from slimext.deploy.predictor import DetectorPredictor, create_config
from slimext.deploy.runtimes import confirm_int8_kernels
from slimext.deploy.preprocess import load_image

PASS_LOG_MARKERS = ("squashed", "quantized", "fused")


def _val_image(tiny_dataset):
    return load_image(os.path.join(tiny_dataset, "val", "val_00000.png"))


def test_int8_predictor_reports_every_conv_in_int8(qdq_export):
    report = confirm_int8_kernels(qdq_export)
    assert report.convs > 0 and report.int8_convs == report.convs, report.line()
    assert report.reorders.get("quantize", 0) > 0 and report.fp32_convs == []
    assert report.line().startswith("INT8 kernels: {0} of {0} convs".format(report.convs))


def test_float_export_forced_to_int8_is_an_error(float_export):
    assert not is_qdq_program(os.path.join(float_export, "model.pdmodel"))
    with pytest.raises(Int8NotUsedError, match=r"float export .*INT8 kernels: 0 of \d+ convs"):
        DetectorPredictor(float_export, "int8")


def test_qdq_export_that_ran_fp32_is_an_error(qdq_export, tmp_path):
    # The same QDQ program optimized without the INT8 passes: what a rejected scale gives.
    from paddle import inference

    config = create_config(qdq_export, "onednn")
    config.set_optim_cache_dir(str(tmp_path))
    config.enable_save_optim_model(True)
    inference.create_predictor(config)
    report = paddle_int8_report(str(tmp_path / "_optimized.pdmodel"))
    assert report.convs > 0 and report.int8_convs == 0
    with pytest.raises(Int8NotUsedError, match="has quantize/dequantize ops but paddle ran no"):
        confirm_int8(report, qdq_export)


def test_int8_detections_track_the_float_model(qdq_export, float_export, tiny_dataset):
    image = _val_image(tiny_dataset)
    int8 = DetectorPredictor(qdq_export, "int8").predict(image).boxes
    fp32 = DetectorPredictor(float_export, "onednn").predict(image).boxes
    assert len(int8) > 0 and np.isfinite(int8).all()
    # abs_max PTQ of a 1-epoch model: the best scores stay within a few hundredths.
    top = min(len(int8), len(fp32), 10)
    np.testing.assert_allclose(np.sort(int8[:, 1])[-top:], np.sort(fp32[:, 1])[-top:],
                               atol=0.05)


def _infer(model_dir, tiny_dataset, tmp_path, *extra):
    return run_tool(["tools/infer.py", "--model_dir", model_dir, "--image_file",
                     os.path.join(tiny_dataset, "val", "val_00000.png"),
                     "--output_dir", str(tmp_path)] + list(extra))


def test_infer_prints_the_int8_line_and_no_pass_log(qdq_export, tiny_dataset, tmp_path):
    result = _infer(qdq_export, tiny_dataset, tmp_path, "--precision", "int8")
    assert result.returncode == 0, result.stderr[-2000:]
    assert [l for l in result.stdout.splitlines() if l.startswith("INT8 kernels: ")]
    noisy = [l for l in result.stderr.splitlines() if l.startswith("---")
             or any(m in l for m in ("squashed", "quantized "))]
    assert noisy == [], noisy[:5]


def test_infer_verbose_shows_the_pass_log(qdq_export, tiny_dataset, tmp_path):
    result = _infer(qdq_export, tiny_dataset, tmp_path, "--precision", "int8", "--verbose")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "squashed" in result.stderr and "quantized" in result.stderr


def test_infer_refuses_int8_on_a_float_export(float_export, tiny_dataset, tmp_path):
    result = _infer(float_export, tiny_dataset, tmp_path, "--precision", "int8")
    assert result.returncode == 2
    errors = [l for l in result.stderr.splitlines() if l.startswith("Error: ")]
    assert len(errors) == 1 and "float export" in errors[0] and "Traceback" not in result.stderr


def _optimized_program(path, ops):
    """A serialized program of (op type, mkldnn_data_type or None) ops, as Paddle
    Inference writes its optimized one."""
    from paddle.base.proto import framework_pb2

    program = framework_pb2.ProgramDesc()
    block = program.blocks.add()
    block.idx, block.parent_idx = 0, -1
    for index, (op_type, data_type) in enumerate(ops):
        op = block.ops.add()
        op.type = op_type
        output = op.outputs.add()
        output.parameter, output.arguments[:] = "Out", ["out{}".format(index)]
        if data_type is not None:
            attr = op.attrs.add()
            attr.name, attr.type, attr.s = "mkldnn_data_type", framework_pb2.STRING, data_type
    with open(path, "wb") as f:
        f.write(program.SerializeToString())
    return path


def test_the_report_counts_matrix_products_apart_from_convs(tmp_path):
    path = _optimized_program(str(tmp_path / "_optimized.pdmodel"), [
        ("fused_conv2d", "int8"), ("fc", "int8"), ("fc", "int8"), ("fc", "float32"),
        ("matmul_v2", None), ("fused_matmul", "int8"), ("layer_norm", None),
        ("quantize", None)])
    report = paddle_int8_report(path)
    assert (report.convs, report.int8_convs) == (1, 1)
    assert (report.matmuls, report.int8_matmuls) == (5, 3)
    assert report.int8_ops == {"fc": 2, "fused_matmul": 1}
    assert report.as_dict()["matmuls"] == 5
