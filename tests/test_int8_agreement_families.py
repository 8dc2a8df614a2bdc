"""The oneDNN INT8 predictor computes what the fake-quant model computes, on PaddleDetection's
own blocks: ESNet's SE module (global average pool) and inverted residual (split, concat,
channel shuffle), PTQ abs_max, 32 px.

Agreement is measured as max |INT8 - reference| / (range of the reference output). The
tolerance 1e-4 is far below one quantization step of any tensor here (1/127 of its scale,
about 1e-2 of the output range after one conv) and far above float round-off (~1e-7 seen):
a scale oneDNN applies differently from the fake-quant model fails it by two orders.
"""
import os
import tempfile

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from ppdet.modeling.backbones import esnet
from slimext.deploy.int8_kernels import paddle_int8_report
from slimext.deploy.predictor import create_config
from slimext.quant import PTQCalibrator

SIZE = 32
TOLERANCE = 1e-4


class BlockNet(nn.Layer):
    """conv -> a ppdet block -> conv: the block's input and output are real conv tensors."""

    def __init__(self, block, channels=16):
        super().__init__()
        self.stem = nn.Conv2D(3, channels, 3, padding=1)
        self.block = block
        self.tail = nn.Conv2D(channels, 8, 1)

    def forward(self, x):
        return self.tail(self.block(self.stem(x)))


def _batches():
    rng = np.random.RandomState(0)
    return [paddle.to_tensor(rng.randn(2, 3, SIZE, SIZE).astype("float32")) for _ in range(2)]


def _set_batch_norm_statistics(model, batch):
    # Random weights: statistics from data keep activations in a sane range.
    norms = [l for l in model.sublayers() if isinstance(l, (nn.BatchNorm2D, nn.BatchNorm))]
    for layer in norms:
        layer._momentum = 0.0
        layer.train()
    with paddle.no_grad():
        model(batch)
    model.eval()


def _quantize_and_export(block, out_dir):
    paddle.seed(0)
    model = BlockNet(block)
    batches = _batches()
    _set_batch_norm_statistics(model, batches[0])
    x = batches[0][:1]
    ptq = PTQCalibrator(backend="onednn", algo="abs_max", input_shape=(1, 3, SIZE, SIZE))
    model = ptq.quantize(model, lambda m: [m(b) for b in batches], example_inputs=[x])
    spec = [paddle.static.InputSpec([1, 3, SIZE, SIZE], "float32", "image")]
    report = ptq.save_quantized_model(model, os.path.join(out_dir, "model"), input_spec=spec)
    with paddle.no_grad():
        fake_quant = model(x).numpy()   # after export: the model the export describes
    return report, x.numpy(), fake_quant


def _run(model_dir, precision, x):
    from paddle import inference

    config = create_config(model_dir, precision)
    optim_dir = tempfile.mkdtemp(prefix="int8_agreement_")
    if precision == "int8":
        config.set_optim_cache_dir(optim_dir)
        config.enable_save_optim_model(True)
    predictor = inference.create_predictor(config)
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(x.shape)
    handle.copy_from_cpu(x)
    predictor.run()
    out = predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
    report = (paddle_int8_report(os.path.join(optim_dir, "_optimized.pdmodel"))
              if precision == "int8" else None)
    return out, report


def _relative(a, reference):
    return float(np.abs(a - reference).max() / (reference.max() - reference.min()))


def _op_types(model_dir):
    from slimext.deploy.int8_kernels import _read_program
    return [op.type for block in _read_program(os.path.join(model_dir, "model.pdmodel")).blocks
            for op in block.ops]


def test_se_module_int8_matches_fake_quant(tmp_path):
    """The SE gate quantizes the map, so oneDNN's INT8 pool2d averages on that map's step
    (the fast form; a float mean costs layout reorders): the pooled vector lands at most
    step of conv1's input quantizer away from fake-quant, which conv1, conv2 and the gate
    carry to the output as about one output step (0.0047-0.0080 of the range seen), hence
    two output steps as the bound; the pool test below is the exact check of the rewrite
    that a map without a quantizer needs."""
    report, x, fake_quant = _quantize_and_export(esnet.SEModule(16), str(tmp_path))
    assert report["global_pools_as_mean"] == 0
    types = _op_types(str(tmp_path))
    assert "pool2d" in types and "reduce_mean" not in types
    int8, kernels = _run(str(tmp_path), "int8", x)
    assert kernels.int8_convs == kernels.convs == 4, kernels.line()
    assert _relative(int8, fake_quant) < 2.0 / 127


def test_pool_without_quantized_input_int8_matches_fake_quant(tmp_path):
    """A pool whose map has no quantizer of its own: oneDNN propagated the pooled vector's
    (small) scale back onto the map and clipped it before averaging (0.51 of the range)."""
    block = nn.Sequential(nn.AdaptiveAvgPool2D(1), nn.Conv2D(16, 16, 1))
    report, x, fake_quant = _quantize_and_export(block, str(tmp_path))
    int8, _ = _run(str(tmp_path), "int8", x)
    assert _relative(int8, fake_quant) < TOLERANCE


def test_inverted_residual_int8_matches_its_export(tmp_path):
    """ESNet's block quantizes its split halves and the pointwise conv's output with
    different scales (a conv input and a concat's shared scale read the same tensor); oneDNN
    keeps one scale per tensor and read the depthwise conv's input on the concat's grid
    (0.0096 of the range). The export gives each such tensor one scale, in the model too."""
    block = esnet.InvertedResidual(16, 16, 16, 1, act="hard_swish")
    report, x, fake_quant = _quantize_and_export(block, str(tmp_path))
    unified = report["tensor_scales_unified"]
    assert unified and all(len(set(c["scales"])) > 1 for c in unified)
    assert any("block._conv_pw._conv/input" in c["quantizers"] for c in unified)
    int8, kernels = _run(str(tmp_path), "int8", x)
    export_float, _ = _run(str(tmp_path), "fp32", x)
    assert kernels.int8_convs == kernels.convs, kernels.line()
    # The block's SE pool reads a quantized map, so it runs as an INT8 pool2d (fast) whose
    # averages land on that map's step: about one output step from the export's float run
    # (0.009 seen; the tensors' scales, unified, add nothing: 0 with the pool as a mean).
    assert _relative(int8, export_float) < 2.0 / 127
    # Left: fake-quant clips at -scale, the program and oneDNN at -128/127 scale (values
    # below the calibrated range only), and the INT8 SE pool above: two output steps.
    assert _relative(int8, fake_quant) < 2.0 / 127


class TinyYolo(nn.Layer):
    """Three feature levels into ppdet's YOLOv3Head, whose output convs ppdet marks
    skip_quant (as YOLOv3-MobileNetV3 exports them)."""

    def __init__(self):
        from ppdet.modeling.heads.yolo_head import YOLOv3Head

        super().__init__()
        self.stem = nn.Conv2D(3, 8, 3, stride=2, padding=1)
        self.levels = nn.LayerList([nn.Conv2D(8, 8, 3, stride=2, padding=1) for _ in range(3)])
        self.yolo_head = YOLOv3Head(in_channels=[8, 8, 8], num_classes=2, loss=None)

    def forward(self, x):
        feats, y = [], nn.functional.relu(self.stem(x))
        for level in self.levels:
            y = nn.functional.relu(level(y))
            feats.append(y)
        outputs = self.yolo_head(feats[::-1])
        return paddle.concat([o.flatten(1) for o in outputs], axis=1)


def _yolo_export(out_dir, rules=None):
    import yaml

    paddle.seed(0)
    model = TinyYolo()
    model.eval()
    batches = _batches()
    ptq = PTQCalibrator(backend="onednn", algo="abs_max", input_shape=(1, 3, SIZE, SIZE),
                        rules=rules)
    model = ptq.quantize(model, lambda m: [m(b) for b in batches],
                         example_inputs=[batches[0][:1]])
    spec = [paddle.static.InputSpec([1, 3, SIZE, SIZE], "float32", "image")]
    ptq.save_quantized_model(model, os.path.join(out_dir, "model"), input_spec=spec)
    with open(os.path.join(out_dir, "infer_cfg.yml"), "w") as f:
        yaml.safe_dump({"label_list": ["a", "b"], "Preprocess": [{"type": "Permute"}]}, f)


def test_kernel_line_names_the_skip_quant_yolo_output_convs(tmp_path):
    from slimext.deploy.predictor import DetectorPredictor

    _yolo_export(str(tmp_path))
    report = DetectorPredictor(str(tmp_path), "int8").int8_report
    assert report.convs == 7 and report.int8_convs == 4, report.line()
    # Every fp32 conv is explained: the model's own skip_quant, not a refused INT8 pass.
    assert set(report.fp32_reasons) == set(report.fp32_convs)
    assert "3 convs fp32: yolo_head.yolo_output.{0,1,2} (planned float: model skip_quant)" \
        in report.line()


def test_rule_cannot_quantize_the_yolo_output_convs(tmp_path):
    """ppdet calls the output convs through a plain Python list (`self.yolo_outputs[i]`),
    not through the wrappers quantization puts in their place: a rule asking for them
    stops with the layers named rather than exporting float convs as quantized."""
    from slimext.quant.calibration import CalibrationError

    with pytest.raises(CalibrationError, match=r"yolo_head\.yolo_output\.0/input"):
        _yolo_export(str(tmp_path), rules=[{"match": "yolo_head.yolo_output.*",
                                            "skip": False}])


def test_export_weights_round_as_the_model(tmp_path):
    """Weights on a half step (2.5 of 127 steps) round away from zero in the model's weight
    quantizer and to even in the export's weight pass: the export stores the model's
    integers, so the export's own float run equals fake-quant (PP-YOLOE+ s: 0.12 / 0.26 of
    the box / score range before, 6e-7 after)."""
    paddle.seed(0)
    model = BlockNet(nn.Conv2D(16, 16, 1))
    weight = np.random.RandomState(1).randint(-127, 128, size=(16, 16, 1, 1)).astype("float32")
    weight[:, 0] = 127.0                        # the channel's abs max: steps of exactly 1
    weight[:, 1:9] = np.array([0.5, 1.5, 2.5, -2.5, 10.5, -11.5, 60.5, -100.5],
                              "float32")[None, :, None, None]
    model.block.weight.set_value(weight / 127.0 * 4.0)   # scale by a power of two: exact
    batches = _batches()
    x = batches[0][:1]
    ptq = PTQCalibrator(backend="onednn", algo="abs_max", input_shape=(1, 3, SIZE, SIZE))
    model = ptq.quantize(model, lambda m: [m(b) for b in batches], example_inputs=[x])
    spec = [paddle.static.InputSpec([1, 3, SIZE, SIZE], "float32", "image")]
    report = ptq.save_quantized_model(model, str(tmp_path / "model"), input_spec=spec)
    with paddle.no_grad():
        fake_quant = model(x).numpy()
    assert report["weight_elements_rounded_as_model"]
    export_float, _ = _run(str(tmp_path), "fp32", x.numpy())
    int8, _ = _run(str(tmp_path), "int8", x.numpy())
    assert _relative(export_float, fake_quant) < TOLERANCE
    assert _relative(int8, fake_quant) < TOLERANCE


class TinyPan(nn.Layer):
    """Three feature levels into ppdet's CustomCSPPAN as PP-YOLOE+ configures it (swish,
    SPP on the top level); the outputs flattened into one tensor."""

    def __init__(self):
        from ppdet.modeling.necks.custom_pan import CustomCSPPAN

        super().__init__()
        self.stem = nn.Conv2D(3, 8, 3, stride=2, padding=1)
        self.levels = nn.LayerList([nn.Conv2D(8 if i == 0 else 16, 16, 3, stride=2, padding=1)
                                    for i in range(3)])
        self.neck = CustomCSPPAN(in_channels=[16, 16, 16], out_channels=[32, 16, 8],
                                 act="swish", stage_num=1, block_num=1, spp=True)

    def forward(self, x):
        feats, y = [], self.stem(x)
        for level in self.levels:
            y = nn.functional.swish(level(y))
            feats.append(y)
        return paddle.concat([o.flatten(1) for o in self.neck(feats)], axis=1)


def test_model_from_the_checkpoint_takes_the_export_scales(tmp_path):
    """PP-YOLOE+'s neck reads a tensor through several quantizers (a stage output by the
    next route conv and by a later concat's shared quantizer); the export gives each tensor
    one scale. An export made from a checkpoint does so on its own model: another instance
    loaded from the same checkpoint (the fake-quant model evaluated beside the export) kept
    the old scales and computed other numbers until it takes the export's (PP-YOLOE+ s:
    1.09 of the top score apart, 0 after)."""
    from slimext.quant.tensor_scales import apply_export_scales

    paddle.seed(0)
    model = TinyPan()
    batches = _batches()
    _set_batch_norm_statistics(model, batches[0])
    x = batches[0][:1]
    ptq = PTQCalibrator(backend="onednn", algo="abs_max", input_shape=(1, 3, SIZE, SIZE))
    model = ptq.quantize(model, lambda m: [m(b) for b in batches], example_inputs=[x])
    checkpoint = {name: value.numpy().copy() for name, value in model.state_dict().items()}
    spec = [paddle.static.InputSpec([1, 3, SIZE, SIZE], "float32", "image")]
    report = ptq.save_quantized_model(model, str(tmp_path / "model"), input_spec=spec)
    changes = report["tensor_scales_unified"]
    assert changes, "no tensor with several scales: the block no longer shows the case"
    export_float, _ = _run(str(tmp_path), "fp32", x.numpy())

    model.set_state_dict(checkpoint)            # as built again from the checkpoint
    with paddle.no_grad():
        from_checkpoint = model(x).numpy()
    assert _relative(from_checkpoint, export_float) > 10 * TOLERANCE

    assert apply_export_scales(model, ptq.plan, changes) == sum(
        len(c["quantizers"]) for c in changes)
    with paddle.no_grad():
        with_export_scales = model(x).numpy()
    assert _relative(with_export_scales, export_float) < TOLERANCE


def test_export_scales_refuse_another_plan(tmp_path):
    from slimext.quant.tensor_scales import apply_export_scales

    paddle.seed(0)
    ptq = PTQCalibrator(backend="onednn", algo="abs_max", input_shape=(1, 3, SIZE, SIZE))
    batches = _batches()
    model = ptq.quantize(BlockNet(nn.Conv2D(16, 16, 1)), lambda m: [m(b) for b in batches],
                         example_inputs=[batches[0][:1]])
    with pytest.raises(ValueError, match=r"no quantizer named neck:concat#0/shared"):
        apply_export_scales(model, ptq.plan, [{"quantizers": ["neck:concat#0/shared"],
                                               "scale": 1.0}])


class FloatAfterConcat(nn.Layer):
    """A conv the plan leaves float reading a planned concat's (quantized) output, as GFL's
    FPN output convs read the lateral sums."""

    def __init__(self):
        super().__init__()
        self.left = nn.Conv2D(16, 8, 1)
        self.right = nn.Conv2D(16, 8, 3, padding=1)
        self.float_conv = nn.Conv2D(16, 16, 3, padding=1)

    def forward(self, x):
        return self.float_conv(paddle.concat([self.left(x), self.right(x)], axis=1))


def test_planned_float_conv_on_a_quantized_tensor_runs_fp32(tmp_path):
    """oneDNN runs INT8 every conv whose input has a scale, with weight scales of its own;
    the export gives a planned-float conv a float copy of its input, so it runs fp32 on the
    values the fake-quant model's float conv reads."""
    paddle.seed(0)
    model = BlockNet(FloatAfterConcat())
    batches = _batches()
    x = batches[0][:1]
    ptq = PTQCalibrator(backend="onednn", algo="abs_max", input_shape=(1, 3, SIZE, SIZE),
                        rules=[{"match": "block.float_conv", "skip": True}])
    model = ptq.quantize(model, lambda m: [m(b) for b in batches], example_inputs=[x])
    spec = [paddle.static.InputSpec([1, 3, SIZE, SIZE], "float32", "image")]
    report = ptq.save_quantized_model(model, str(tmp_path / "model"), input_spec=spec)
    with paddle.no_grad():
        fake_quant = model(x).numpy()
    assert report["float_conv_inputs_copied"] == [model.block.float_conv.weight.name]
    int8, kernels = _run(str(tmp_path), "int8", x.numpy())
    assert (kernels.convs, kernels.int8_convs) == (5, 4), kernels.line()
    assert _relative(int8, fake_quant) < TOLERANCE
