"""Data-parallel QAT: 2 CPU processes under Paddle's launcher (gloo), the demo PicoDet.

Every run is a real `python -m paddle.distributed.launch --nproc_per_node 2`.
"""
import glob
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from conftest import DEMO_CONFIG, REPO_ROOT, run_tool_ok

RESIDUAL_QAT = os.path.join(REPO_ROOT, "configs", "slim", "residual_qat",
                            "picodet_demo_residual_qat.yml")
STOCK_QAT = os.path.join(REPO_ROOT, "configs", "slim", "quant", "picodet_demo_qat.yml")
WORKER = os.path.join(REPO_ROOT, "tests", "distributed", "scale_sync_worker.py")
VOTE_WORKER = os.path.join(REPO_ROOT, "tests", "distributed", "vote_worker.py")
# 16 training images, 2 per rank and step: 4 optimizer steps per epoch on each rank.
SHORT_RUN = ["epoch=1", "TrainReader.batch_size=2", "worker_num=0"]
FAILURE_DEADLINE_S = 180  # a hang guard (subprocess timeout), not a timed assertion


def launch(script_args, log_dir, timeout=600):
    """Run `python -m paddle.distributed.launch --nproc_per_node 2 ...` from the repo root."""
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
               "--log_dir", str(log_dir)] + list(script_args)
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def worker_logs(log_dir):
    return [open(os.path.join(str(log_dir), "workerlog.{}".format(r))).read() for r in (0, 1)]


def launch_ok(script_args, log_dir):
    result = launch(script_args, log_dir)
    assert result.returncode == 0, "\n".join(log[-3000:] for log in worker_logs(log_dir))
    return result


def run_worker(out_dir, slim_config, dataset_overrides, extra=()):
    """Both ranks' records: {rank: npz} (see tests/distributed/scale_sync_worker.py)."""
    launch_ok([WORKER, str(out_dir), "-c", DEMO_CONFIG, "--slim_config", slim_config,
               "--output_dir", str(out_dir / "ckpt"), "-o"] + SHORT_RUN + dataset_overrides
              + list(extra), out_dir / "log")
    return [dict(np.load(str(out_dir / "rank{}.npz".format(r)))) for r in (0, 1)]


@pytest.fixture(scope="module")
def monitored_slim_config(tmp_path_factory):
    """The demo ResidualQAT config with the join monitor sampling every step."""
    # Same file name as the original: ppdet names the checkpoint folder after it.
    path = tmp_path_factory.mktemp("slim") / os.path.basename(RESIDUAL_QAT)
    with open(RESIDUAL_QAT) as stream:
        text = stream.read()
    path.write_text(text.replace("  rules: []\n", "  rules: []\n  monitor: {every_n_steps: 1}\n"))
    assert "monitor:" in path.read_text()
    return str(path)


@pytest.fixture(scope="module")
def synced_run(tmp_path_factory, dataset_overrides, monitored_slim_config):
    out = tmp_path_factory.mktemp("synced")
    return out, run_worker(out, monitored_slim_config, dataset_overrides)


def columns(names, suffix):
    return [i for i, name in enumerate(names) if name.endswith(suffix)]


def assert_reference_reduction(ranks):
    """Synced values == mean of the ranks' local values; scale == mean accum / mean state."""
    names = list(ranks[0]["names"])
    local = np.stack([r["local"] for r in ranks])   # [rank, step, value]
    synced = ranks[0]["synced"]
    reference = local.mean(axis=0)
    state, accum, scale = (columns(names, s) for s in (".state", ".accum", ".scale"))
    assert len(state) == len(accum) == len(scale) > 50
    np.testing.assert_allclose(synced[:, state], reference[:, state], rtol=1e-6)
    np.testing.assert_allclose(synced[:, accum], reference[:, accum], rtol=1e-6)
    np.testing.assert_allclose(synced[:, scale], reference[:, accum] / reference[:, state],
                               rtol=1e-6)


def test_synced_scales_are_identical_on_both_ranks_and_the_mean_observer(synced_run):
    _, ranks = synced_run
    assert int(ranks[0]["world"]) == 2
    assert ranks[0]["synced"].shape[0] == 4  # one record per optimizer step
    np.testing.assert_array_equal(ranks[0]["synced"], ranks[1]["synced"])
    names = list(ranks[0]["names"])
    scale = columns(names, ".scale")
    # The ranks saw different images: their local scales differ before each sync.
    assert np.abs(ranks[0]["local"][:, scale] - ranks[1]["local"][:, scale]).max() > 1e-3
    assert_reference_reduction(ranks)
    # Join quantizers (slimext's) are synced as well as PaddleSlim's input quantizers.
    assert any(name.startswith("slimext_join_quantizers.") for name in names)


def test_monitor_reports_the_error_over_both_ranks_batches(synced_run):
    from slimext.analysis.monitor_sums import error_db

    _, ranks = synced_run
    sent = [r["monitor_local"] for r in ranks]        # [sampled step, quantizer * 3]
    assert sent[0].shape[0] == 4 and sent[0].shape == sent[1].shape
    assert not np.allclose(sent[0], sent[1])          # each rank measured its own batch
    for r in ranks:
        np.testing.assert_allclose(r["monitor_reduced"], sent[0] + sent[1], rtol=1e-6)
    np.testing.assert_array_equal(ranks[0]["monitor_sqnr"], ranks[1]["monitor_sqnr"])
    # Each sample is the SQNR of the summed signal and noise of both ranks.
    totals = ranks[0]["monitor_reduced"].reshape(4, -1, 3)
    per_step = len(ranks[0]["monitor_sqnr"]) // 4
    assert per_step == totals.shape[1] > 0
    for index, sqnr in enumerate(ranks[0]["monitor_sqnr"]):
        signal, noise, _ = totals[index // per_step, index % per_step]
        assert sqnr == pytest.approx(error_db(float(signal), float(noise))[0], rel=1e-6)


def test_stock_paddleslim_qat_scales_are_synced(tmp_path, dataset_overrides):
    ranks = run_worker(tmp_path, STOCK_QAT, dataset_overrides)
    np.testing.assert_array_equal(ranks[0]["synced"], ranks[1]["synced"])
    assert_reference_reduction(ranks)


def test_without_sync_the_ranks_scales_differ(tmp_path, dataset_overrides):
    ranks = run_worker(tmp_path, RESIDUAL_QAT, dataset_overrides, ["ScaleSync.enable=false"])
    scale = columns(list(ranks[0]["names"]), ".scale")
    for r in ranks:  # nothing touches the local values between the two records
        np.testing.assert_array_equal(r["local"], r["synced"])
    assert np.abs(ranks[0]["synced"][-1, scale] - ranks[1]["synced"][-1, scale]).max() > 1e-3


def test_an_interval_syncs_every_nth_step_and_the_epochs_last(tmp_path, dataset_overrides):
    ranks = run_worker(tmp_path, RESIDUAL_QAT, dataset_overrides, ["ScaleSync.every_n_steps=3"])
    scale = columns(list(ranks[0]["names"]), ".scale")
    for r in ranks:  # steps 1 and 2: left alone
        np.testing.assert_array_equal(r["local"][:2], r["synced"][:2])
    assert np.abs(ranks[0]["synced"][1, scale] - ranks[1]["synced"][1, scale]).max() > 1e-3
    # step 3 (the interval) and step 4 (the epoch's last, before the checkpoint): synced
    np.testing.assert_array_equal(ranks[0]["synced"][2:], ranks[1]["synced"][2:])
    reference = (ranks[0]["local"][2:] + ranks[1]["local"][2:]) / 2
    state = columns(list(ranks[0]["names"]), ".state")
    np.testing.assert_allclose(ranks[0]["synced"][2:, state], reference[:, state], rtol=1e-6)


def test_resume_restores_the_checkpoint_scales_on_every_rank(synced_run, tmp_path,
                                                             dataset_overrides):
    out, trained = synced_run
    checkpoint = str(out / "ckpt" / "picodet_demo_residual_qat" / "model_final")
    saved = paddle.load(checkpoint + ".pdparams")
    ranks = run_worker(tmp_path, RESIDUAL_QAT, dataset_overrides, [] + ["--resume", checkpoint])
    names = list(ranks[0]["names"])
    expected = np.array([float(np.asarray(saved[_state_key(n)]).reshape(-1)[0]) for n in names],
                        dtype="float32")
    for r in ranks:
        np.testing.assert_array_equal(r["start"], expected)
    # ... which are the trained scales, not a fresh model's initial ones.
    np.testing.assert_array_equal(ranks[0]["start"], trained[0]["synced"][-1])


def _state_key(name):
    """'a.b._fake_quant_input.scale' -> state-dict key 'a.b._fake_quant_input._scale'."""
    path, attr = name.rsplit(".", 1)
    return "{}.{}".format(path, attr if attr == "alpha" else "_" + attr)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, dataset_overrides, monitored_slim_config):
    """tools/train.py under the launcher: ResidualQAT with the join monitor every step."""
    out = tmp_path_factory.mktemp("cli")
    launch_ok(["tools/train.py", "-c", DEMO_CONFIG, "--slim_config", monitored_slim_config,
               "--output_dir", str(out / "ckpt"), "-o"] + SHORT_RUN + dataset_overrides,
              out / "log")
    return out, worker_logs(out / "log")


def test_cli_side_effects_happen_once_on_rank_0(cli_run):
    out, (log0, log1) = cli_run
    assert log0.count("ResidualQAT plan") == 1 and "ResidualQAT plan" not in log1
    assert "scale sync: 4 all-reduces over 4 steps" in log0
    assert "join monitor report:" in log0 and "join monitor report:" not in log1
    report_dir = out / "ckpt" / "picodet_demo_residual_qat" / "join_monitor"
    assert sorted(os.listdir(str(report_dir)))  # the CSV/JSON written by rank 0
    assert glob.glob(str(out / "ckpt" / "picodet_demo_residual_qat" / "model_final.pdparams"))


def test_export_from_a_two_process_run_validates_and_runs_int8(cli_run, dataset_overrides,
                                                               tiny_dataset, tmp_path):
    out, _ = cli_run
    weights = str(out / "ckpt" / "picodet_demo_residual_qat" / "model_final")
    run_tool_ok(["tools/export_model.py", "-c", DEMO_CONFIG, "--slim_config", RESIDUAL_QAT,
                 "--output_dir", str(tmp_path), "-o", "weights=" + weights] + dataset_overrides)
    model_dir = str(tmp_path / "picodet_demo_residual_qat")
    image = sorted(glob.glob(os.path.join(tiny_dataset, "val", "*.png")))[0]
    result = run_tool_ok(["tools/infer.py", "--model_dir", model_dir, "--image_file", image,
                          "--output_dir", str(tmp_path / "infer"), "--precision", "int8"])
    assert glob.glob(str(tmp_path / "infer" / "*.png")), result.stdout[-2000:]


def test_a_failing_weight_check_stops_both_ranks_in_bounded_time(tmp_path, dataset_overrides):
    wrong = str(tmp_path / "wrong.pdparams")
    paddle.save({"unrelated.weight": paddle.ones([3, 3])}, wrong)
    result = launch(["tools/train.py", "-c", DEMO_CONFIG, "--slim_config", RESIDUAL_QAT,
                     "--output_dir", str(tmp_path / "ckpt"), "-o", "pretrain_weights=" + wrong]
                    + SHORT_RUN + dataset_overrides, tmp_path / "log",
                    timeout=FAILURE_DEADLINE_S)
    assert result.returncode != 0
    for log in worker_logs(tmp_path / "log"):
        assert "Error: " in log, log[-2000:]


def test_a_failure_on_one_rank_stops_the_rank_that_passed(tmp_path):
    result = launch([VOTE_WORKER, "1"], tmp_path / "log", timeout=FAILURE_DEADLINE_S)
    assert result.returncode != 0
    log0, log1 = worker_logs(tmp_path / "log")
    assert "peer failed: loading the weights failed on rank(s) 1" in log0, log0[-2000:]
    assert "own error: weights do not fit on rank 1" in log1, log1[-2000:]
    assert "passed" not in log0 + log1


def test_the_vote_lets_every_rank_pass_when_none_fails(tmp_path):
    launch_ok([VOTE_WORKER, "-1"], tmp_path / "log")
    assert all("passed" in log.splitlines() for log in worker_logs(tmp_path / "log"))


# In one process (no launcher): settings, observer discovery, errors.

def test_observers_are_found_by_type_with_their_state_accum_and_scale():
    from paddle.nn.quant.quant_layers import FakeQuantMovingAverageAbsMax

    from slimext.quant.scale_sync import ScaleSync

    model = paddle.nn.Sequential(paddle.nn.Linear(2, 2), FakeQuantMovingAverageAbsMax())
    sync = ScaleSync(model)
    assert sync.names == ["1.state", "1.accum", "1.scale"]
    model.train()
    model[1](paddle.full([4], 3.0))
    np.testing.assert_allclose(sync.flat().numpy(), [1.9, 0.9 + 3.0, 3.9 / 1.9], rtol=1e-6)
    sync.sync()  # one process: nothing to average, nothing changes
    np.testing.assert_allclose(sync.flat().numpy(), [1.9, 3.9, 3.9 / 1.9], rtol=1e-6)


def test_a_missing_observer_attribute_names_the_installed_versions():
    from paddle.nn.quant.quant_layers import FakeQuantMovingAverageAbsMax

    from slimext.quant.scale_sync import ObserverLayoutError, ScaleSync

    observer = FakeQuantMovingAverageAbsMax()
    del observer._accum
    with pytest.raises(ObserverLayoutError, match="_accum.*Paddle {}".format(paddle.__version__)):
        ScaleSync(paddle.nn.Sequential(observer))


@pytest.mark.parametrize("setting, message", [
    ({"every_n_steps": 0}, "every_n_steps must be an integer >= 1"),
    ({"enable": "yes"}, "enable must be true or false"),
    ({"every_n_step": 2}, "unknown key.*every_n_step.*valid keys are enable, every_n_steps"),
    ([1], "must be a mapping"),
])
def test_bad_scale_sync_settings_name_the_key(setting, message):
    from slimext.slim.data_parallel import ScaleSyncConfigError, scale_sync_settings

    with pytest.raises(ScaleSyncConfigError, match=message):
        scale_sync_settings({"ScaleSync": setting})


def test_scale_sync_defaults_to_every_step():
    from slimext.slim.data_parallel import scale_sync_settings

    assert scale_sync_settings({}) == {"enable": True, "every_n_steps": 1}


def test_paddledetections_own_train_script_through_slimext_launch_gets_scale_sync(
        tmp_path, dataset_overrides):
    script = os.path.join(REPO_ROOT, "tests", "ppdet_tools", "train_v26.py")
    launcher = os.path.join(REPO_ROOT, "slimext", "launch.py")
    launch_ok([launcher, script, "-c", DEMO_CONFIG, "--slim_config", RESIDUAL_QAT, "-o",
               "save_dir=" + str(tmp_path / "ckpt")] + SHORT_RUN + dataset_overrides,
              tmp_path / "log")
    log0, log1 = worker_logs(tmp_path / "log")
    assert "identical on all ranks before training" in log0
    assert "scale sync: 4 all-reduces over 4 steps" in log0
