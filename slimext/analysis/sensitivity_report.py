"""Present a sensitivity ranking: a table, a JSON with every number, a bar chart of the top.

Every file is written to a temporary name beside its target and renamed into place, so an
interrupted run never leaves a half-written report.
"""
import json
import math
import os

from slimext.fileio import atomic_path, atomic_write_text

MODE_MEANING = {"alone": "only this unit quantized, the rest float",
                "float_alone": "only this unit float, the rest quantized"}


def format_value(value, metric):
    if value is None:
        return "n/a"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return "{:.4f}".format(value) if metric == "map" else "{:.2f}".format(value)


def _signed(value, metric):
    text = format_value(value, metric)
    return text if value is None or text.startswith("-") else "+" + text


def ranking_table(ranking, num_batches=None):
    """The ranked table as text: rank, unit, kind, metric, delta vs all-float / all-quant."""
    metric = ranking.metric
    lines = ["Quantization sensitivity: {}, mode {} ({}), {} units{}".format(
        ranking.label, ranking.mode, MODE_MEANING[ranking.mode], len(ranking.scores),
        ", {} batches".format(num_batches) if num_batches else "")]
    lines.append("all float: {}   all quantized: {}   (most sensitive first)".format(
        format_value(ranking.float_value, metric), format_value(ranking.quant_value, metric)))
    width = max([44] + [len(s.unit.name) for s in ranking.scores])
    lines.append("{:>4}  {:<{w}}  {:<5}  {:>10}  {:>12}  {:>12}".format(
        "rank", "unit", "kind", ranking.label, "vs all-float", "vs all-quant", w=width))
    for rank, score in enumerate(ranking.scores, 1):
        lines.append("{:>4}  {:<{w}}  {:<5}  {:>10}  {:>12}  {:>12}".format(
            rank, score.unit.name, score.unit.kind, format_value(score.value, metric),
            _signed(ranking.delta_vs_float(score), metric),
            _signed(ranking.delta_vs_quant(score), metric), w=width))
    return "\n".join(lines)


def _plain(value):
    """JSON has no inf/nan: keep numbers, spell the others out."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def ranking_dict(ranking):
    return {
        "metric": ranking.metric, "label": ranking.label, "mode": ranking.mode,
        "all_float": _plain(ranking.float_value), "all_quant": _plain(ranking.quant_value),
        "seconds": round(ranking.seconds, 2),
        "units": [{"rank": rank, "unit": s.unit.name, "kind": s.unit.kind, "site": s.unit.site,
                   "quantizers": list(s.unit.quantizers), "value": _plain(s.value),
                   "delta_vs_float": ranking.delta_vs_float(s),
                   "delta_vs_quant": ranking.delta_vs_quant(s)}
                  for rank, s in enumerate(ranking.scores, 1)],
    }


def _bar_values(ranking, scores):
    """What a bar shows: the change against the mode's baseline when that is finite."""
    if ranking.mode == "alone" and math.isfinite(ranking.float_value):
        return [ranking.delta_vs_float(s) for s in scores], \
            "{} change vs all-float (quantized alone)".format(ranking.label)
    if ranking.mode == "float_alone" and math.isfinite(ranking.quant_value):
        return [ranking.delta_vs_quant(s) for s in scores], \
            "{} gain vs all-quantized (kept float alone)".format(ranking.label)
    return [s.value for s in scores], "{} with only this unit quantized".format(ranking.label)


def plot_ranking(ranking, path, top=20):
    """Horizontal bar chart of the `top` most sensitive units (rank 1 at the top) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = ranking.scores[:top]
    values, xlabel = _bar_values(ranking, scores)
    values = [v if v is not None and math.isfinite(v) else 0.0 for v in values]
    colors = ["#3b75af" if s.unit.kind == "layer" else "#e08a2c" for s in scores]
    labels = ["{}. {}".format(i, s.unit.name) for i, s in enumerate(scores, 1)]
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.28 * max(1, len(scores))))
    try:
        ax.barh(range(len(scores)), values, color=colors)
        ax.set_yticks(range(len(scores)))
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
        ax.set_title("Quantization sensitivity, mode {} (blue: layer, orange: join)".format(
            ranking.mode), fontsize=10)
        if ranking.mode == "alone" and not math.isfinite(ranking.float_value) \
                and math.isfinite(ranking.quant_value):
            ax.axvline(ranking.quant_value, color="gray", linestyle="--", linewidth=1)
            ax.text(ranking.quant_value, -0.7, " all quantized", color="gray", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        with atomic_path(path) as staging:
            _save_small_png(fig, staging)
    finally:
        plt.close(fig)


def _save_small_png(fig, path):
    """A bar chart has few colours: a 64-colour palette PNG is ~5x smaller and looks the same."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=80, format="png")
    buffer.seek(0)
    Image.open(buffer).convert("RGB").quantize(colors=64).save(path, format="PNG",
                                                                optimize=True)


def write_text(path, text):
    atomic_write_text(path, text if text.endswith("\n") else text + "\n")


def write_json(path, data):
    write_text(path, json.dumps(data, indent=2, allow_nan=False))


REPORT_FILES = {"table": "sensitivity.txt", "json": "sensitivity.json",
                "chart": "sensitivity.png", "slim_config": "suggested_slim.yml"}


def write_report(output_dir, ranking, settings, suggested_yaml, suggested_rules,
                 screening=None, plot_top=20):
    """Write table, JSON, chart and suggested slim YAML to output_dir; return their paths."""
    paths = {key: os.path.join(output_dir, name) for key, name in REPORT_FILES.items()}
    num_batches = settings.get("num_batches")
    table = ranking_table(ranking, num_batches)
    if screening is not None:
        table += "\n\nScreening of all units (the top {} were measured above):\n{}".format(
            len(ranking.scores), ranking_table(screening, num_batches))
    write_text(paths["table"], table)
    data = {"settings": settings, "ranking": ranking_dict(ranking),
            "screening": ranking_dict(screening) if screening is not None else None,
            "suggested_rules": suggested_rules}
    write_json(paths["json"], data)
    plot_ranking(ranking, paths["chart"], plot_top)
    write_text(paths["slim_config"], suggested_yaml)
    return paths
