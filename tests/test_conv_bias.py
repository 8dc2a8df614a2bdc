"""Conv biases in the form oneDNN fuses: same outputs, no separate bias adds left."""
import collections
import os

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import pytest

from quant_models import GatedNet, example_input
from slimext.compat.tracing import export_tracing
from slimext.deploy.conv_bias import rewrite_saved_model
from slimext.deploy.int8_kernels import _read_program

INPUT_SPEC = [paddle.static.InputSpec([1, 3, 32, 32], "float32", "x")]


class OffsetAfterRelu(nn.Layer):
    """A reshaped parameter added to a non-conv output: a plain add, left alone."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2D(3, 8, 3, padding=1, bias_attr=False)
        self.offset = self.create_parameter([8])

    def forward(self, x):
        return F.relu(self.conv(x)) + self.offset.reshape([1, 8, 1, 1])


def save(model, folder):
    model.eval()
    prefix = os.path.join(str(folder), "model")
    with export_tracing():  # an old-IR .pdmodel, as every export
        paddle.jit.save(paddle.jit.to_static(model, input_spec=INPUT_SPEC, full_graph=True),
                        prefix, input_spec=INPUT_SPEC)
    return prefix


def op_types(path):
    return collections.Counter(op.type for block in _read_program(path).blocks
                               for op in block.ops)


def run(prefix, optim_dir=None):
    """Outputs of Paddle Inference with oneDNN; the optimized program saved to optim_dir."""
    from paddle import inference

    config = inference.Config(prefix + ".pdmodel", prefix + ".pdiparams")
    config.enable_mkldnn()
    config.set_cpu_math_library_num_threads(1)
    if optim_dir:
        config.set_optim_cache_dir(str(optim_dir))
        config.enable_save_optim_model(True)
    predictor = inference.create_predictor(config)
    predictor.get_input_handle(predictor.get_input_names()[0]).copy_from_cpu(
        example_input().numpy())
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


@pytest.fixture(scope="module")
def gated_export(tmp_path_factory):
    paddle.seed(0)
    prefix = save(GatedNet(), tmp_path_factory.mktemp("gated"))
    before = op_types(prefix + ".pdmodel")
    reference = run(prefix)
    params = open(prefix + ".pdiparams", "rb").read()
    folded = rewrite_saved_model(prefix)
    return prefix, before, reference, params, folded


def test_every_biased_conv_gets_a_foldable_bias(gated_export):
    prefix, before, _, params, folded = gated_export
    # stem, SE reduce and expand, mix, head: five convs with a bias
    assert before["reshape2"] == 5 and folded == 5
    after = op_types(prefix + ".pdmodel")
    assert after["reshape2"] == 0 and after["elementwise_add"] == before["elementwise_add"]
    assert open(prefix + ".pdiparams", "rb").read() == params   # only the program changed


def test_rewritten_export_computes_the_same_and_fuses_the_biases(gated_export, tmp_path):
    prefix, _, reference, _, _ = gated_export
    output = run(prefix, tmp_path)
    np.testing.assert_allclose(output, reference, rtol=1e-5, atol=1e-6)
    optimized = op_types(os.path.join(str(tmp_path), "_optimized.pdmodel"))
    assert optimized["elementwise_add"] + optimized["fused_elementwise_add"] == 0, optimized


def test_a_reshaped_parameter_added_to_a_non_conv_output_is_left_alone(tmp_path):
    paddle.seed(0)
    prefix = save(OffsetAfterRelu(), tmp_path)
    before = open(prefix + ".pdmodel", "rb").read()
    assert rewrite_saved_model(prefix) == 0
    assert open(prefix + ".pdmodel", "rb").read() == before


def test_command_rewrites_an_export_folder_and_refuses_a_wrong_one(tmp_path):
    import shutil
    import subprocess
    import sys

    paddle.seed(0)
    prefix = save(GatedNet(), tmp_path)
    folder = tmp_path / "export"
    folder.mkdir()
    for ext in (".pdmodel", ".pdiparams"):
        shutil.move(prefix + ext, str(folder / ("model" + ext)))
    command = [sys.executable, "-m", "slimext.deploy.conv_bias"]
    done = subprocess.run(command + [str(folder)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "5 conv biases folded" in done.stdout, done.stderr[-2000:]
    refused = subprocess.run(command + [str(tmp_path / "nothing")], capture_output=True,
                             text=True, timeout=300)
    assert refused.returncode != 0 and "has no model.pdmodel" in refused.stderr
