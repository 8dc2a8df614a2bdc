"""Private attributes of Paddle's/PaddleSlim's fake-quant layers are reached only through
slimext.compat.quantizer_internals, and a moved attribute stops with the versions named."""
import os
import re

import paddle
import pytest

from slimext.compat.quantizer_internals import (QuantizerInternalsChanged, layer_quantizers,
                                                moving_average_state, quant_bits,
                                                set_quant_bits)

SLIMEXT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "slimext")
BOUNDARY = os.path.join(SLIMEXT, "compat")
PRIVATE = re.compile(r"(?<!\w)(_fake_quant_(input|weight)|_quant_bits|_act_preprocess"
                     r"|_quantize_inputs|_moving_rate)|(?<!self)\._(scale|state|accum)\b|\"_(scale|state|accum)\"")
# Checkpoint key patterns: names inside saved state dicts, not attribute access.
KEY_FORMATS = {os.path.join(SLIMEXT, "matcher", "keys.py")}


def lines_outside_the_boundary(pattern, skip=()):
    """'path:line: text' of every code line of slimext outside slimext/compat matching."""
    offenders = []
    for folder, _, files in os.walk(SLIMEXT):
        if folder.startswith(BOUNDARY):
            continue
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith(".py") and path not in skip:
                with open(path) as f:
                    for number, line in enumerate(f, 1):
                        if pattern.search(line.split("#")[0]):
                            offenders.append("{}:{}: {}".format(path, number, line.strip()))
    return offenders


def test_no_private_quantizer_attribute_outside_the_boundary():
    offenders = lines_outside_the_boundary(PRIVATE, skip=KEY_FORMATS)
    assert not offenders, "\n".join(offenders)


def _slim_quantized_conv():
    from paddleslim import QAT

    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3))
    QAT(config={"weight_quantize_type": "channel_wise_abs_max",
                "activation_quantize_type": "moving_average_abs_max"}).quantize(model)
    return dict(model.named_sublayers())["0._layer"]  # the QuantizedConv2D


def test_per_layer_bits_reach_paddleslims_quantizers():
    quantizers = layer_quantizers(_slim_quantized_conv())
    assert set(quantizers) == {"input", "weight"}
    set_quant_bits(quantizers["input"], 16)
    assert quant_bits(quantizers["input"]) == 16
    scale, state, accum = moving_average_state(quantizers["input"])
    assert scale.shape == state.shape == accum.shape == [1]


def test_a_moved_attribute_fails_loudly_with_the_versions():
    with pytest.raises(QuantizerInternalsChanged, match=r"_quant_bits.*Paddle \d.*PaddleSlim \d"):
        set_quant_bits(paddle.nn.Linear(2, 2), 8)
    assert layer_quantizers(paddle.nn.Conv2D(3, 4, 3)) == {}


PPDET_PRIVATE = re.compile(r"_load_config_with_base|\._metrics\b")


def test_ppdet_privates_only_in_the_boundary_and_loud_when_gone():
    from slimext.compat.ppdet_internals import PpdetInternalsChanged, trainer_metrics

    for folder, _, files in os.walk(SLIMEXT):
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith(".py") and not folder.startswith(BOUNDARY):
                with open(path) as f:
                    assert not PPDET_PRIVATE.search(f.read()), path
    with pytest.raises(PpdetInternalsChanged, match=r"Trainer._metrics.*paddledet 2\.6\.0"):
        trainer_metrics(object())


# Private program editing, ppdet privates and assignments to Paddle's or ppdet's attributes:
# only slimext.compat may do them (patches of another package live in one place).
PATCH_OR_PRIVATE = re.compile(
    r"\._(rename_input|remove_op|insert_op|sync_with_cpp)\(|layer_helper\.LayerHelper"
    r"|_prune_input_spec|\._local_rank\b|\.loader\.loader\b"
    r"|\bload_pretrain_weight\s*=[^=]|\bTrainer\.\w+\s*=[^=]|\bcallbacks\.\w+\s*=[^=]"
    r"|^\s*(paddle|ppdet|paddleslim)(\.\w+)+\s*=[^=]|setattr\((paddle|ppdet|paddleslim|Trainer)\b")


def test_patches_and_private_reach_ins_only_in_the_boundary():
    offenders = lines_outside_the_boundary(PATCH_OR_PRIVATE)
    assert not offenders, "\n".join(offenders)


def test_a_moved_program_editing_method_fails_loudly_with_the_version():
    from slimext.compat.program_editing import ProgramEditingChanged, remove_op

    with pytest.raises(ProgramEditingChanged, match=r"_remove_op.*Paddle \d"):
        remove_op(object(), 0)


def test_qat_scales_start_at_the_first_batch_abs_max():
    """Paddle's quantizers start at state = accum = 1 (a first scale of (0.9 + max) / 1.9,
    half the range clipped); slimext's QAT starts each one from its first batch."""
    from quant_models import ResidualNet, example_input
    from slimext.compat.quantizer_internals import is_moving_average
    from slimext.quant import QATQuantizer

    paddle.seed(0)
    x = example_input() * 20   # an abs max far from the initial 1
    model = QATQuantizer(backend="onednn")(ResidualNet(), example_inputs=[x])
    observers = {name: layer for name, layer in model.named_sublayers()
                 if is_moving_average(layer)}
    seen, second = {}, {}

    def record(name):
        def hook(layer, inputs):
            (second if name in seen else seen)[name] = float(inputs[0].abs().max())
        return hook

    hooks = [layer.register_forward_pre_hook(record(name)) for name, layer in observers.items()]
    model.train()
    model(x)
    assert len(seen) == len(observers) > 3
    for name, layer in observers.items():
        scale, state, accum = moving_average_state(layer)
        assert float(scale) == pytest.approx(seen[name], rel=1e-5), name
    # ... and the average goes on from there: (0.9 max1 + max2) / 1.9, not max2 alone.
    model(x * 0.5)
    for hook in hooks:
        hook.remove()
    for name, layer in observers.items():
        scale, state, accum = moving_average_state(layer)
        assert float(scale) == pytest.approx((0.9 * seen[name] + second[name]) / 1.9,
                                             rel=1e-5), name
