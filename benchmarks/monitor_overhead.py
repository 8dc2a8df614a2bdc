"""Training step time of the demo PicoDet under ResidualQAT: join monitor off vs on.

    python -m benchmarks.monitor_overhead [--steps 40] [--warmup 5] [--batch 8]

Three copies of the demo PicoDet (configs/picodet/picodet_xs_192_demo_lcnet.yml, random
init, same seed) are quantized with the demo ResidualQAT settings: monitor off, sampling
every 20 steps, sampling every step. They train round-robin on the same batches (one step
each per round, so load on the shared CPU hits all three alike). Reported per setting:
median and mean step time over the timed steps and the ratios to "off"; the mean carries
the occasional sampled step of every_n_steps=20, the median of every_n_steps=1 is the cost
of a sampled step. The report writing at the end is timed apart. Prints a markdown table,
writes benchmarks/results/monitor_overhead.json.
"""
import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
DEMO_CONFIG = os.path.join(REPO, "configs", "picodet", "picodet_xs_192_demo_lcnet.yml")
SLIM_CONFIG = os.path.join(REPO, "configs", "slim", "residual_qat",
                           "picodet_demo_residual_qat.yml")
RESULTS = os.path.join(REPO, "benchmarks", "results", "monitor_overhead.json")
REPRODUCE = "python -m benchmarks.monitor_overhead"
SETTINGS = (("off", None), ("every_n_steps=20", 20), ("every_n_steps=1", 1))


def training_batches(workdir, batch_size, count, seed=0):
    """`count` real PicoDet training batches from a freshly generated demo set."""
    from ppdet.core.workspace import create, load_config, merge_config

    from slimext.data.demo import generate

    data = os.path.join(workdir, "demo")
    generate(data, num_train=batch_size * count, num_val=batch_size, seed=seed)
    cfg = load_config(DEMO_CONFIG)
    load_config(SLIM_CONFIG)  # the head settings the demo QAT trains with
    merge_config({"TrainDataset": {"dataset_dir": data},
                  "TrainReader": {"batch_size": batch_size}})
    loader = create("TrainReader")(create("TrainDataset")(), 0)
    batches = []
    for batch in loader:
        batch["epoch_id"] = 0
        batches.append(batch)
        if len(batches) == count:
            break
    return cfg, batches


def quantized_model(cfg, every_n_steps, report_dir):
    import paddle
    from ppdet.core.workspace import create

    from slimext.analysis.monitor import monitor_from_config
    from slimext.quant import QATQuantizer

    paddle.seed(0)
    model = create(cfg.architecture)
    monitor = None
    if every_n_steps is not None:
        monitor = {"every_n_steps": every_n_steps, "output_dir": report_dir}
    shape = [1] + list(cfg.TestReader["inputs_def"]["image_shape"][1:])
    qat = QATQuantizer(backend="onednn", quant_config=cfg.ResidualQAT["quant_config"],
                      input_shape=shape, monitor=monitor_from_config(monitor))
    model = qat(model)
    model.train()
    optimizer = paddle.optimizer.Momentum(0.001, parameters=model.parameters())
    return qat, model, optimizer


def train_step(model, optimizer, batch):
    start = time.perf_counter()
    loss = model(batch)["loss"]
    loss.backward()
    optimizer.step()
    optimizer.clear_grad()
    return time.perf_counter() - start


def measure(args, workdir):
    import logging

    cfg, batches = training_batches(workdir, args.batch, args.batches)
    runs = []
    for label, every in SETTINGS:
        qat, model, optimizer = quantized_model(cfg, every, os.path.join(workdir, label))
        runs.append({"label": label, "every_n_steps": every, "qat": qat, "model": model,
                     "optimizer": optimizer, "times": []})
    logging.getLogger("slimext.analysis.monitor").setLevel(logging.WARNING)  # time, not logs
    for round_index in range(args.warmup + args.steps):
        batch = batches[round_index % len(batches)]
        for run in runs:
            elapsed = train_step(run["model"], run["optimizer"], batch)
            if round_index >= args.warmup:
                run["times"].append(elapsed)
    for run in runs:
        start = time.perf_counter()
        run["qat"].finalize()
        run["report_s"] = time.perf_counter() - start if run["every_n_steps"] else None
        run["quantizers"] = len(run["qat"].plan.quantizers)
    return runs


def rows_of(runs):
    base = runs[0]
    base_median, base_mean = statistics.median(base["times"]), statistics.fmean(base["times"])
    rows = []
    for run in runs:
        median, mean = statistics.median(run["times"]), statistics.fmean(run["times"])
        rows.append({"monitor": run["label"], "median_step_ms": round(1000 * median, 1),
                     "mean_step_ms": round(1000 * mean, 1),
                     "median_ratio": round(median / base_median, 3),
                     "mean_ratio": round(mean / base_mean, 3),
                     "report_s": None if run["report_s"] is None else round(run["report_s"], 2),
                     "join_quantizers": run["quantizers"], "timed_steps": len(run["times"])})
    return rows


def markdown(rows):
    lines = ["| monitor | median step (ms) | mean step (ms) | median / off | mean / off "
             "| report at end (s) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| {} | {} | {} | {:.3f} | {:.3f} | {} |".format(
            r["monitor"], r["median_step_ms"], r["mean_step_ms"], r["median_ratio"],
            r["mean_ratio"], "-" if r["report_s"] is None else r["report_s"]))
    return "\n".join(lines)


def write_json(path, result):
    from slimext.fileio import atomic_write_json

    atomic_write_json(path, result)


def main(argv=None):
    import slimext

    slimext.register_with_ppdet()  # slimext's slim classes and compat fixes
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40,
                        help="timed steps per setting (40: two sampling periods of 20)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--batch", type=int, default=8, help="images per training batch")
    parser.add_argument("--batches", type=int, default=4, help="distinct batches, cycled")
    parser.add_argument("--json", default=RESULTS, help="where the results go")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.batch < 1 or args.batches < 1:
        parser.error("--steps, --batch and --batches must be >= 1, --warmup >= 0")

    import paddle

    paddle.set_device("cpu")
    with tempfile.TemporaryDirectory(prefix="monitor_overhead-") as workdir:
        rows = rows_of(measure(args, workdir))
    table = markdown(rows)
    result = {"benchmark": "join monitor overhead, demo PicoDet ResidualQAT training step",
              "reproduce": REPRODUCE + " --steps {} --warmup {} --batch {}".format(
                  args.steps, args.warmup, args.batch),
              "config": os.path.relpath(DEMO_CONFIG, REPO), "batch_size": args.batch,
              "warmup_steps": args.warmup, "timed_steps": args.steps,
              "paddle": paddle.__version__, "cpu_count": os.cpu_count(),
              "machine": platform.machine(), "python": platform.python_version(),
              "rows": rows, "markdown": table}
    write_json(args.json, result)
    print(table)
    print("\nwritten: {}\nreproduce: {}".format(args.json, result["reproduce"]))


if __name__ == "__main__":
    main()
