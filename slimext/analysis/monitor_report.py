"""The join monitor's report: per-quantizer summary with flags, written as CSV, JSON and PNG.

A quantizer is flagged when even the best of its recent samples is below the threshold:
its error stayed high; one noisy step early in training does not flag it.
"""
import csv
import io
import json
import math
import os
import statistics
import subprocess
import sys
from collections import OrderedDict

from slimext.fileio import atomic_path, atomic_write_text

REPORT_FILES = {"csv": "join_errors.csv", "json": "join_errors.json", "png": "join_sqnr.png"}
PLOT_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "monitor_plot.py")


def summarize(samples, kinds, threshold_db, recent_samples):
    """{quantizer: numbers and flag}; NaN samples (a non-finite tensor) count as failures."""
    by_name = OrderedDict()
    for sample in samples:
        by_name.setdefault(sample.quantizer, []).append(sample)
    summary = OrderedDict()
    for name, series in by_name.items():
        sqnr = [s.sqnr_db for s in series]
        finite = [v for v in sqnr if math.isfinite(v)]
        recent = [v for v in sqnr[-recent_samples:] if math.isfinite(v)]
        summary[name] = {
            "kind": kinds.get(name, "join"),
            "samples": len(series),
            "non_finite_samples": len(sqnr) - len(finite),
            "last_step": series[-1].step,
            "last_sqnr_db": sqnr[-1],
            "mean_sqnr_db": statistics.fmean(finite) if finite else math.nan,
            "min_sqnr_db": min(finite) if finite else math.nan,
            "recent_max_sqnr_db": max(recent) if recent else math.nan,
            "last_rel_mse": series[-1].rel_mse,
            "flagged": not recent or max(recent) < threshold_db,
        }
    return summary


def _finite_or_none(value):
    """JSON has no NaN: non-finite numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    return value


def csv_text(samples):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["step", "quantizer", "sqnr_db", "rel_mse"])
    for s in samples:
        writer.writerow([s.step, s.quantizer, "{:.4f}".format(s.sqnr_db),
                         "{:.6g}".format(s.rel_mse)])
    return buffer.getvalue()


def json_text(summary, config):
    report = {
        "threshold_db": config["threshold_db"],
        "recent_samples": config["recent_samples"],
        "every_n_steps": config["every_n_steps"],
        "flagged": [name for name, s in summary.items() if s["flagged"]],
        "quantizers": _finite_or_none(dict(summary)),
    }
    return json.dumps(report, indent=2) + "\n"


def _draw_png(csv_path, json_path, png_path):
    """Plot in a fresh process without paddle (see monitor_plot.py for why)."""
    with atomic_path(png_path, suffix=".png") as staging:
        result = subprocess.run([sys.executable, "-I", PLOT_SCRIPT, csv_path, json_path, staging],
                                capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise RuntimeError("drawing {} failed: {}".format(
                png_path, result.stderr.strip().splitlines()[-1:] or result.returncode))


def write_report(output_dir, samples, summary, config):
    """Write the CSV, JSON and PNG into output_dir; return {"csv"|"json"|"png": path}."""
    os.makedirs(output_dir, exist_ok=True)
    paths = {key: os.path.join(output_dir, name) for key, name in REPORT_FILES.items()}
    atomic_write_text(paths["csv"], csv_text(samples))
    atomic_write_text(paths["json"], json_text(summary, config))
    _draw_png(paths["csv"], paths["json"], paths["png"])
    return paths
