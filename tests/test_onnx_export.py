"""ONNX export: the same numbers as Paddle Inference, Q/DQ where the plan put them, clear errors.

Float: ONNX Runtime's raw outputs within 1e-4 (relative to each output's range) of Paddle
Inference's. INT8: the ONNX graph executed node by node equals Paddle's run of the QDQ
program (the fake-quant arithmetic), and ONNX Runtime's optimized INT8 run stays within the
tolerance the project holds every INT8 runtime to (5% of the output range).
"""
import json
import os

import numpy as np
import onnx
import paddle
import pytest

from conftest import run_tool, run_tool_ok
from onnx_helpers import (copy_with_nms_inputs_as_outputs, ort_session, relative_error,
                          run_session)
from quant_models import MixedJoins, ResidualNet, example_input, train_steps
from test_cli_errors import assert_one_error_line
from slimext.compat.tracing import export_tracing
from slimext.deploy.predictor import DetectorPredictor
from slimext.deploy.preprocess import load_image
from slimext.deploy.runtimes import create_detector
from slimext.onnx import UnsupportedOpError, convert_export
from slimext.onnx.program_reader import read_program
from slimext.quant import QATQuantizer

INPUT_SPEC = [paddle.static.InputSpec([1, 3, 32, 32], "float32", "x")]
INT8_TOLERANCE = 0.05   # of the output range, as tests/test_residual_ptq.py holds oneDNN INT8


def _val_inputs(detector, tiny_dataset):
    return detector.preprocess(load_image(os.path.join(tiny_dataset, "val", "val_00000.png")))


def _nodes(model, op_type):
    return [n for n in model.graph.node if n.op_type == op_type]


def _initializers(model):
    return {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}


@pytest.fixture(scope="module")
def qdq_raw(qdq_export, tmp_path_factory):
    return copy_with_nms_inputs_as_outputs(qdq_export, str(tmp_path_factory.mktemp("qdq_raw")))


def test_float_raw_outputs_match_paddle_inference(raw_export, tiny_dataset):
    model = convert_export(raw_export)
    onnx.checker.check_model(model)
    paddle_run = DetectorPredictor(raw_export, "fp32")
    inputs = _val_inputs(paddle_run, tiny_dataset)
    reference = paddle_run.run_raw(inputs)
    outputs = run_session(ort_session(model), inputs)
    assert [o.shape for o in outputs] == [r.shape for r in reference]
    for output, expected in zip(outputs, reference):
        assert relative_error(output, expected) < 1e-4


def test_int8_graph_is_the_programs_arithmetic_and_ort_int8_stays_close(qdq_raw,
                                                                        tiny_dataset):
    model = convert_export(qdq_raw)
    fake_quant = DetectorPredictor(qdq_raw, "fp32")   # QDQ ops run in float: fake quant
    inputs = _val_inputs(fake_quant, tiny_dataset)
    reference = fake_quant.run_raw(inputs)
    node_by_node = run_session(ort_session(model, optimize=False), inputs)
    int8 = create_detector(qdq_raw, "onnxruntime", "int8")
    assert int8.int8_report.int8_convs > 0
    optimized = int8.run_raw(inputs)
    for exact, fast, expected in zip(node_by_node, optimized, reference):
        # A value a float rounding apart from a quantizer's step boundary lands one step
        # off, and the step travels on: both stay within the INT8 tolerance.
        assert relative_error(exact, expected) < INT8_TOLERANCE
        assert relative_error(fast, expected) < INT8_TOLERANCE


def test_qdq_export_keeps_int8_weights_per_channel_and_every_pair(qdq_export):
    program = read_program(qdq_export)
    model = convert_export(qdq_export)
    weights = _initializers(model)
    assert len(_nodes(model, "QuantizeLinear")) == \
        sum(op.type == "quantize_linear" for op in program.ops)
    assert len(_nodes(model, "DequantizeLinear")) == \
        sum(op.type == "dequantize_linear" for op in program.ops)
    producers = {o: n for n in model.graph.node for o in n.output}
    for conv in _nodes(model, "Conv"):
        data, weight = producers[conv.input[0]], producers[conv.input[1]]
        assert data.op_type == weight.op_type == "DequantizeLinear", conv.output[0]
        stored = weights[weight.input[0]]
        axis = [a.i for a in weight.attribute if a.name == "axis"]
        assert stored.dtype == np.int8 and axis == [0]
        assert weights[weight.input[1]].shape == (stored.shape[0],)
    # Shared scales stay shared: one ONNX scale per Paddle scale variable.
    paddle_scales = {op.input("Scale") for op in program.ops if op.type == "quantize_linear"}
    onnx_scales = {n.input[1] for n in _nodes(model, "QuantizeLinear")}
    assert onnx_scales == {name + "@step" for name in paddle_scales}


def test_export_tool_writes_a_checked_file_with_nms(float_export, tiny_dataset, tmp_path):
    target = tmp_path / "picodet.onnx"
    result = run_tool_ok(["tools/export_onnx.py", "--model_dir", float_export,
                          "--save_file", str(target), "--opset_version", "13"])
    assert str(target) in result.stdout
    model = onnx.load(str(target))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["image", "scale_factor"]
    assert len(_nodes(model, "NonMaxSuppression")) == 1
    assert not [p for p in os.listdir(str(tmp_path)) if p != "picodet.onnx"]   # no temp left
    # The rows Paddle's multiclass_nms3 returns: same count, same scores and classes.
    paddle_run = DetectorPredictor(float_export, "fp32")
    inputs = _val_inputs(paddle_run, tiny_dataset)
    boxes, counts = run_session(ort_session(model), inputs)
    expected, expected_counts = paddle_run.run_raw(inputs)
    assert boxes.shape[1] == 6 and counts.tolist() == expected_counts.tolist()
    rows = int(counts[0])
    assert rows > 0
    np.testing.assert_allclose(np.sort(boxes[:rows, 1]), np.sort(expected[:rows, 1]),
                               atol=1e-4)
    assert set(boxes[:rows, 0]) == set(expected[:rows, 0])
    assert np.all(np.diff(boxes[:rows, 1]) <= 0)   # best first


def test_no_nms_outputs_the_raw_boxes_and_scores(float_export, tmp_path):
    target = tmp_path / "raw.onnx"
    run_tool_ok(["tools/export_onnx.py", "--model_dir", float_export, "--save_file",
                 str(target), "--no_nms"])
    model = onnx.load(str(target))
    assert not _nodes(model, "NonMaxSuppression")
    nms = [op for op in read_program(float_export).ops if op.type == "multiclass_nms3"][0]
    assert [o.name for o in model.graph.output] == [nms.input("BBoxes"), nms.input("Scores")]


def _tensorrt_export(tmp_path, model):
    paddle.seed(0)
    qat = QATQuantizer(backend="tensorrt")
    model = train_steps(qat(model, example_inputs=[example_input()]))
    prefix = str(tmp_path / "model")
    qat.save_quantized_model(model, prefix, input_spec=INPUT_SPEC)
    with open(str(tmp_path / "quant_plan.json")) as f:
        return prefix, json.load(f), model(example_input()).numpy()


def test_tensorrt_profile_has_qdq_exactly_where_the_plan_says(tmp_path):
    prefix, sidecar, fake_quant = _tensorrt_export(tmp_path, ResidualNet())
    model = convert_export(prefix)
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    join_steps = {var + "@step" for var in sidecar["scale_vars"].values()}
    # The plan: for each residual add, one quantizer on its skip input, none on its output.
    assert sorted(sidecar["scale_vars"]) == ["blocks.0:add#0/in1", "blocks.1:add#0/in1"]
    adds = [n for n in _nodes(model, "Add") if all(i in producers for i in n.input)]
    assert len(adds) == 2
    for add in adds:
        sources = [producers[i] for i in add.input]
        skip = [s for s in sources if s.op_type == "DequantizeLinear"]
        assert len(skip) == 1 and skip[0].input[1] in join_steps   # the skip input, quantized
        quantize = producers[skip[0].input[0]]
        assert quantize.op_type == "QuantizeLinear" and quantize.input[1] == skip[0].input[1]
        residual = [s for s in sources if s is not skip[0]][0]
        assert residual.op_type == "BatchNormalization"   # conv + bn + add fuse in TensorRT
        assert producers[residual.input[0]].op_type == "Conv"
        assert not any(c.op_type == "QuantizeLinear" and c.input[1] in join_steps
                       for c in consumers.get(add.output[0], []))   # no output quantizer
    # Every conv reads Q/DQ data and an int8 per-channel weight: explicit quantization.
    weights = _initializers(model)
    for conv in _nodes(model, "Conv"):
        data, weight = producers[conv.input[0]], producers[conv.input[1]]
        assert data.op_type == "DequantizeLinear"
        assert producers[data.input[0]].op_type == "QuantizeLinear"
        assert weights[weight.input[0]].dtype == np.int8
    quantizers = [n for n in _nodes(model, "QuantizeLinear") if n.input[1] in join_steps]
    assert len(quantizers) == len(sidecar["scale_vars"])
    # And the numbers: ONNX Runtime within the INT8 tolerance of the fake-quant model.
    output = run_session(ort_session(model), {"x": example_input().numpy()})[0]
    assert relative_error(output, fake_quant) < INT8_TOLERANCE


def test_a_shared_scale_group_reads_one_onnx_scale(tmp_path):
    paddle.seed(0)
    qat = QATQuantizer(backend="onednn")
    model = train_steps(qat(MixedJoins(), example_inputs=[example_input()]))
    prefix = str(tmp_path / "model")
    qat.save_quantized_model(model, prefix, input_spec=INPUT_SPEC)
    group = qat.plan.quantizers["<model>:concat#0/shared"]
    step = qat.quantizer(group.name)._scale.name + "@step"
    onnx_model = convert_export(prefix)
    uses = [n for n in _nodes(onnx_model, "QuantizeLinear") if n.input[1] == step]
    assert len(uses) == len(group.members) == 3
    assert sum(t.name == step for t in onnx_model.graph.initializer) == 1


class _ConvThenCumsum(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 4, 3)

    def forward(self, x):
        return paddle.cumsum(self.conv(x), axis=1)


def test_an_op_without_converter_stops_the_export_naming_it(tmp_path):
    folder = tmp_path / "cumsum_export"
    with export_tracing():
        paddle.jit.save(paddle.jit.to_static(_ConvThenCumsum(), input_spec=INPUT_SPEC,
                                             full_graph=True), str(folder / "model"))
    with pytest.raises(UnsupportedOpError, match="cumsum"):
        convert_export(str(folder))
    target = tmp_path / "x.onnx"
    result = run_tool(["tools/export_onnx.py", "--model_dir", str(folder),
                       "--save_file", str(target)])
    assert_one_error_line(result, "op cumsum", "cannot convert")
    assert not target.exists()


def test_bad_flags_are_one_error_line(float_export, tmp_path):
    result = run_tool(["tools/export_onnx.py", "--model_dir", float_export, "--save_file",
                       str(tmp_path / "x.onnx"), "--opset_version", "11"])
    assert_one_error_line(result, "opset_version 11", "13")
    result = run_tool(["tools/export_onnx.py", "--model_dir", str(tmp_path / "missing"),
                       "--save_file", str(tmp_path / "x.onnx")])
    assert_one_error_line(result, "does not exist")


def _vision_model(name):
    from paddle.vision.models import mobilenet_v2, resnet18

    paddle.seed(0)
    return {"resnet18": resnet18, "mobilenet_v2": mobilenet_v2}[name](num_classes=10)


def _paddle_inference_output(prefix, x):
    from paddle import inference

    from slimext.compat.inference import use_int8_capable_pipeline

    config = inference.Config(prefix + ".pdmodel", prefix + ".pdiparams")
    config.disable_gpu()
    config.disable_mkldnn()   # plain CPU kernels: QDQ ops run as written
    config.disable_glog_info()
    predictor = inference.create_predictor(use_int8_capable_pipeline(config))
    predictor.get_input_handle(predictor.get_input_names()[0]).copy_from_cpu(x)
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_paddle_vision_classifiers_convert_float_and_int8(name, tmp_path):
    spec = [paddle.static.InputSpec([1, 3, 64, 64], "float32", "x")]
    x = example_input(size=64)
    model = _vision_model(name)
    model.eval()
    prefix = str(tmp_path / "float" / "model")
    with export_tracing():
        paddle.jit.save(paddle.jit.to_static(model, input_spec=spec, full_graph=True), prefix)
    output = run_session(ort_session(convert_export(prefix)), {"x": x.numpy()})[0]
    assert relative_error(output, _paddle_inference_output(prefix, x.numpy())) < 1e-4

    qat = QATQuantizer(backend="onednn")
    quantized = train_steps(qat(_vision_model(name), example_inputs=[x]), steps=1, size=64)
    qdq_prefix = str(tmp_path / "int8" / "model")
    qat.save_quantized_model(quantized, qdq_prefix, input_spec=spec)
    qdq = convert_export(qdq_prefix)
    producers = {o: n for n in qdq.graph.node for o in n.output}
    convs = _nodes(qdq, "Conv")
    assert convs and all(producers[c.input[0]].op_type == producers[c.input[1]].op_type ==
                         "DequantizeLinear" for c in convs)
    # Random weights give outputs near noise; what is checked is the conversion: the graph
    # node by node against Paddle Inference running the same QDQ program.
    output = run_session(ort_session(qdq, optimize=False), {"x": x.numpy()})[0]
    assert relative_error(output, _paddle_inference_output(qdq_prefix, x.numpy())) < \
        INT8_TOLERANCE
