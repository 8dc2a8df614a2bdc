"""Draw the join monitor's SQNR-over-steps PNG from its CSV and JSON report.

    python slimext/analysis/monitor_plot.py join_errors.csv join_errors.json join_sqnr.png

Runs as a plain script in its own process, without paddle: libpaddle exports its own zlib
symbols, and PNG compression (PIL, cv2) crashes in a process that loaded zlib after paddle.
So this file imports nothing from slimext.
"""
import csv
import json
import sys
from collections import OrderedDict

LEGEND_LINES = 12  # more lines than this: the legend names the worst ones only


def read_series(csv_path):
    """{quantizer: ([steps], [sqnr_db])} in file order; 'nan' rows are left out."""
    series = OrderedDict()
    with open(csv_path, newline="") as stream:
        for row in csv.DictReader(stream):
            value = float(row["sqnr_db"])
            if value == value:
                steps, values = series.setdefault(row["quantizer"], ([], []))
                steps.append(int(row["step"]))
                values.append(value)
    return series


def draw(series, report, png_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    quantizers = report["quantizers"]
    threshold = report["threshold_db"]
    kinds = [k for k in ("join", "layer") if any(quantizers.get(n, {}).get("kind", "join") == k
                                                  for n in series)] or ["join"]
    figure = Figure(figsize=(11, 4.5 * len(kinds)))
    FigureCanvasAgg(figure)  # Agg canvas without pyplot: no global backend switch
    for row, kind in enumerate(kinds, start=1):
        axes = figure.add_subplot(len(kinds), 1, row)
        names = [n for n in series if quantizers.get(n, {}).get("kind", "join") == kind]
        worst = sorted(names, key=lambda n: sum(series[n][1]) / len(series[n][1]))
        named = set(worst[:LEGEND_LINES])
        for name in names:
            steps, values = series[name]
            axes.plot(steps, values, marker="." if len(steps) < 30 else None, linewidth=1,
                      label=name if name in named else "_nolegend_")
        axes.axhline(threshold, color="red", linestyle="--",
                     label="threshold {:g} dB".format(threshold))
        axes.set_title("SQNR per {} quantizer{}".format(
            "join" if kind == "join" else "conv/linear input",
            "" if len(names) <= LEGEND_LINES else " (legend: the {} worst)".format(LEGEND_LINES)))
        axes.set_xlabel("training step")
        axes.set_ylabel("SQNR (dB)")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.tight_layout()
    figure.savefig(png_path, format="png", dpi=100)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print("usage: python monitor_plot.py REPORT.csv REPORT.json OUT.png", file=sys.stderr)
        return 2
    csv_path, json_path, png_path = argv
    with open(json_path) as stream:
        report = json.load(stream)
    draw(read_series(csv_path), report, png_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
