"""Shared, expensive fixtures: one tiny demo set, one 1-epoch checkpoint, its exports.

All are session-scoped so the suite trains once; tools run as subprocesses, as a user runs them.
"""
import copy
import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
import slimext  # noqa: E402

# In-process tests build slim models through ppdet's registry, as slimext's tools do.
slimext.register_with_ppdet()
DEMO_CONFIG = os.path.join(REPO_ROOT, "configs", "picodet", "picodet_xs_192_demo_lcnet.yml")


def run_tool(args, timeout=600):
    """Run `python args...` from the repo root; return the CompletedProcess (text)."""
    return subprocess.run([sys.executable] + list(args), cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout)


def run_tool_ok(args, timeout=600):
    result = run_tool(args, timeout)
    assert result.returncode == 0, "{} failed:\n{}\n{}".format(
        " ".join(args), result.stdout[-3000:], result.stderr[-3000:])
    return result


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    from slimext.data.demo import generate

    root = str(tmp_path_factory.mktemp("data") / "demo")
    generate(root, num_train=16, num_val=8, seed=0)
    return root


@pytest.fixture(scope="session")
def dataset_overrides(tiny_dataset):
    return ["{}.dataset_dir={}".format(s, tiny_dataset)
            for s in ("TrainDataset", "EvalDataset", "TestDataset")]


@pytest.fixture(scope="session")
def trained_weights(tmp_path_factory, dataset_overrides):
    """Weights prefix of the demo PicoDet after 1 epoch on the tiny set (4 steps)."""
    out = str(tmp_path_factory.mktemp("train"))
    run_tool_ok(["tools/train.py", "-c", DEMO_CONFIG, "--output_dir", out, "--seed", "0",
                 "-o", "epoch=1", "TrainReader.batch_size=4"] + dataset_overrides)
    return os.path.join(out, "picodet_xs_192_demo_lcnet", "model_final")


def _export(tmp_path_factory, weights, overrides, extra=()):
    out = str(tmp_path_factory.mktemp("export"))
    run_tool_ok(["tools/export_model.py", "-c", DEMO_CONFIG, "--output_dir", out,
                 "-o", "weights=" + weights] + list(extra) + overrides)
    return os.path.join(out, "picodet_xs_192_demo_lcnet")


@pytest.fixture(scope="session")
def float_export(tmp_path_factory, trained_weights, dataset_overrides):
    """Export with box decoding and NMS inside (what tools/infer.py runs)."""
    return _export(tmp_path_factory, trained_weights, dataset_overrides)


@pytest.fixture(scope="session")
def raw_export(tmp_path_factory, trained_weights, dataset_overrides):
    """Export of the raw head outputs (export.benchmark=True: no decoding, no NMS)."""
    return _export(tmp_path_factory, trained_weights, dataset_overrides,
                   ["export.benchmark=True"])


@pytest.fixture
def ppdet_workspace():
    """ppdet's global config, restored afterwards so in-process tests do not leak into each other."""
    from ppdet.core import workspace

    config = workspace.global_config
    saved = {key: (value, copy.deepcopy(dict(value)) if isinstance(value, dict)
                   else copy.deepcopy(value)) for key, value in config.items()}
    yield workspace
    config.clear()
    for key, (value, items) in saved.items():
        if isinstance(value, dict):  # keep the SchemaDict object, reset what it holds
            value.clear()
            value.update(items)
            config[key] = value
        else:
            config[key] = items


@pytest.fixture(scope="session")
def qdq_export(tmp_path_factory, trained_weights, dataset_overrides):
    """INT8 QDQ export of the same checkpoint (ResidualPTQ abs_max, one calibration batch)."""
    out = str(tmp_path_factory.mktemp("qdq_export"))
    run_tool_ok(["tools/post_quant.py", "-c", DEMO_CONFIG, "--slim_config",
                 "configs/slim/residual_ptq/picodet_demo_residual_ptq.yml", "--output_dir", out,
                 "-o", "weights=" + trained_weights, "quant_batch_num=1",
                 "ResidualPTQ.algo=abs_max"] + dataset_overrides)
    return os.path.join(out, "picodet_demo_residual_ptq")
