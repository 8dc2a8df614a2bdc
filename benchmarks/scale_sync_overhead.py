"""Cost of rank-consistent scales: data-parallel QAT step time with and without scale sync.

    python -m benchmarks.scale_sync_overhead [--steps 40] [--warmup 4] [--batch 8] [--nproc 2]

Starts `python -m paddle.distributed.launch --nproc_per_node 2` (gloo on CPU) on this file.
Each rank quantizes the demo PicoDet (configs/picodet/picodet_xs_192_demo_lcnet.yml, demo
ResidualQAT settings), wraps it in paddle.DataParallel and trains on its own demo images,
alternating steps without sync and steps followed by `ScaleSync.sync()` (one all-reduce of
every observer's state) in the order off, on, on, off, so both see the same machine load. Reported by rank 0: median
step time of each, their ratio, and the median time of the sync call alone (the overhead
per step at the default interval of 1). Writes benchmarks/results/scale_sync_overhead.json.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from slimext.fileio import atomic_write_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
RESULTS = os.path.join(REPO, "benchmarks", "results", "scale_sync_overhead.json")
REPRODUCE = "python -m benchmarks.scale_sync_overhead"
MARKER = "== scale sync overhead =="


def rank_batches(workdir, rank, batch_size, count):
    """`count` training batches of demo images that only this rank sees (seed = rank)."""
    from benchmarks.monitor_overhead import training_batches

    return training_batches(workdir, batch_size, count, seed=rank)


def measure(args, workdir):
    import paddle

    from benchmarks.monitor_overhead import quantized_model
    from slimext.distributed import rank, start_data_parallel
    from slimext.quant.scale_sync import ScaleSync

    start_data_parallel()
    cfg, batches = rank_batches(workdir, rank(), args.batch, args.batches)
    qat, model, optimizer = quantized_model(cfg, None, workdir)
    sync = ScaleSync(model)
    parallel = paddle.DataParallel(model)
    times = {"off": [], "on": [], "sync": []}
    for index in range(2 * (args.warmup + args.steps)):
        with_sync = index % 4 in (1, 2)  # off, on, on, off: a drifting load hits both alike
        start = time.perf_counter()
        loss = parallel(batches[(index // 2) % len(batches)])["loss"]
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        sync_start = time.perf_counter()
        if with_sync:
            sync.sync()
        end = time.perf_counter()
        if index // 2 >= args.warmup:
            times["on" if with_sync else "off"].append(end - start)
            if with_sync:
                times["sync"].append(end - sync_start)
    return times, len(sync), len(qat.plan.quantizers)


def worker(args):
    import slimext

    slimext.register_with_ppdet()  # slimext's slim classes and compat fixes
    import paddle

    from slimext.deploy.hardware import isa_line
    from slimext.distributed import is_main_rank, world_size

    paddle.set_device("cpu")
    with tempfile.TemporaryDirectory(prefix="scale_sync_overhead-") as workdir:
        times, values, joins = measure(args, workdir)
    if not is_main_rank():
        return
    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    sync_ms = 1000 * statistics.median(times["sync"])
    row = {"ranks": world_size(), "batch_per_rank": args.batch, "timed_steps_each": args.steps,
           "median_step_ms_without_sync": round(1000 * off, 1),
           "median_step_ms_with_sync": round(1000 * on, 1),
           "step_ratio_with_over_without": round(on / off, 3),
           "median_sync_ms": round(sync_ms, 3),
           "sync_share_of_step_pct": round(100 * sync_ms / (1000 * off), 3),
           "observer_values_synced": values, "join_quantizers": joins}
    table = "\n".join([
        "| ranks | step without sync (ms) | step with sync (ms) | with / without | sync call "
        "(ms) | sync / step |", "|---|---|---|---|---|---|",
        "| {ranks} | {median_step_ms_without_sync} | {median_step_ms_with_sync} | "
        "{step_ratio_with_over_without:.3f} | {median_sync_ms} | {sync_share_of_step_pct}% |"
        .format(**row)])
    result = {"benchmark": "scale sync overhead, demo PicoDet ResidualQAT, data parallel "
                           "on CPU (gloo)",
              "reproduce": "{} --steps {} --warmup {} --batch {} --nproc {}".format(
                  REPRODUCE, args.steps, args.warmup, args.batch, world_size()),
              "machine": isa_line(), "paddle": paddle.__version__, "row": row,
              "markdown": table}
    write_json(args.json, result)
    print(MARKER)
    print(result["machine"])
    print(table)
    print("\nwritten: {}\nreproduce: {}".format(args.json, result["reproduce"]))


def write_json(path, result):
    atomic_write_json(path, result, indent=2)


def launch(args, argv):
    """Run this file on `--nproc` ranks with Paddle's launcher; show rank 0's output."""
    with tempfile.TemporaryDirectory(prefix="scale_sync_logs-") as log_dir:
        command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node",
                   str(args.nproc), "--log_dir", log_dir, os.path.abspath(__file__),
                   "--worker"] + argv
        env = dict(os.environ, PYTHONPATH=REPO)
        code = subprocess.run(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode
        with open(os.path.join(log_dir, "workerlog.0")) as stream:
            lines = stream.read().splitlines()
        start = lines.index(MARKER) + 1 if code == 0 and MARKER in lines else -60
        print("\n".join(lines[start:]))
    return code


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="timed steps of each kind")
    parser.add_argument("--warmup", type=int, default=4, help="untimed steps of each kind first")
    parser.add_argument("--batch", type=int, default=8, help="images per rank and step")
    parser.add_argument("--batches", type=int, default=4, help="distinct batches, cycled")
    parser.add_argument("--nproc", type=int, default=2, help="processes (ranks)")
    parser.add_argument("--json", default=RESULTS, help="where the results go")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.steps, args.batch, args.batches) < 1 or args.warmup < 0 or args.nproc < 2:
        parser.error("--steps, --batch, --batches must be >= 1, --warmup >= 0, --nproc >= 2")
    if args.worker:
        worker(args)
        return 0
    return launch(args, [a for a in argv if a != "--worker"])


if __name__ == "__main__":
    sys.exit(main())
