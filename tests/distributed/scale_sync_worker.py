"""One rank of a data-parallel QAT run under `python -m paddle.distributed.launch`.

    python -m paddle.distributed.launch --nproc_per_node 2 tests/distributed/scale_sync_worker.py \
        OUT_DIR -c CFG --slim_config SLIM [-r CKPT] -o ...

Builds the Trainer and the scale sync exactly as tools/train.py does, records every
observer value after each optimizer step before the sync (this rank's local observation)
and after it, and writes OUT_DIR/rank<N>.npz: names, local[steps, n], synced[steps, n],
start[n] (the values before the first step, after any -r resume) and the world size.
With a join monitor in the slim config it also keeps, per sampled step, the vector of sums
the monitor sent to the all-reduce and what came back (monitor_local, monitor_reduced) and
the SQNR samples the monitor recorded (monitor_steps, monitor_names, monitor_sqnr).
"""
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO_ROOT)

import numpy as np  # noqa: E402
from ppdet.engine.callbacks import Callback  # noqa: E402

import slimext  # noqa: E402

slimext.register_with_ppdet()
from slimext.commands.common import load_detection_config, parse_flags  # noqa: E402
from slimext.commands.train import build_parser  # noqa: E402
from slimext.pipeline import prepare_on_all_ranks  # noqa: E402
from slimext.distributed import rank, start_data_parallel, world_size  # noqa: E402
from slimext.quant.scale_sync import ScaleSync  # noqa: E402


class ObserverRecorder(Callback):
    """Copies every observer value at on_step_end (before or after the sync callback)."""

    def __init__(self, model, rows):
        super().__init__(model)
        self.view = ScaleSync(model)
        self.rows = rows

    def on_step_end(self, status):
        self.rows.append(self.view.flat().numpy().copy())


def record_monitor_reductions(records):
    """Keep what the join monitor sends to and gets back from its cross-rank sum."""
    from slimext.analysis import monitor_sums

    reduce = monitor_sums.sum_across_ranks

    def recorded(tensor):
        sent = tensor.numpy().copy()
        result = reduce(tensor)
        records.append((sent, result.numpy().copy()))
        return result

    monitor_sums.sum_across_ranks = recorded


def main(out_dir, argv):
    from ppdet.utils.cli import merge_args

    flags = parse_flags(build_parser(), argv)
    start_data_parallel()
    cfg = load_detection_config(flags, mode="train")
    merge_args(cfg, flags, exclude_args=["config", "opt", "slim_config", "output_dir", "seed"])
    if flags.output_dir:
        cfg.save_dir = flags.output_dir
    local, synced, registered = [], [], []
    # The recorder that sees local values must run before the sync callback: wrap the
    # Trainer's register_callbacks so it goes in first.
    from ppdet.engine import Trainer

    register = Trainer.register_callbacks

    def register_around(trainer, callbacks):
        registered.append(True)
        register(trainer, [ObserverRecorder(trainer.model, local)] + list(callbacks)
                 + [ObserverRecorder(trainer.model, synced)])

    Trainer.register_callbacks = register_around
    trainer = prepare_on_all_ranks(flags, cfg)
    Trainer.register_callbacks = register
    view = ScaleSync(trainer.model)
    start = view.flat().numpy().copy()
    if not registered:  # sync disabled: no callback was registered, record anyway
        trainer.register_callbacks([ObserverRecorder(trainer.model, local),
                                    ObserverRecorder(trainer.model, synced)])
    reductions = []
    record_monitor_reductions(reductions)
    if flags.resume is None:
        trainer.train()
    monitor = getattr(cfg.get("slim"), "monitor", None)
    samples = monitor.samples if monitor is not None else []
    os.makedirs(out_dir, exist_ok=True)
    np.savez(os.path.join(out_dir, "rank{}.npz".format(rank())), names=np.array(view.names),
             local=np.array(local), synced=np.array(synced), start=start,
             world=np.array(world_size()),
             monitor_local=np.array([sent for sent, _ in reductions]),
             monitor_reduced=np.array([got for _, got in reductions]),
             monitor_steps=np.array([s.step for s in samples]),
             monitor_names=np.array([s.quantizer for s in samples]),
             monitor_sqnr=np.array([s.sqnr_db for s in samples]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
