"""The weight check report as text: what the console and the training log show."""
from collections import Counter, OrderedDict

from slimext.matcher.classify import EXPECTED_REASONS, SUSPICIOUS

_KIND_LABEL = {"shape_mismatch": "shape", "missing": "missing", "unused": "unused",
               "ambiguous": "ambiguous"}


def format_report(report, verbose=False, max_rows=8):
    """The report as the console shows it: counts, parts, differences, diagnosis, verdict."""
    lines = ["Weight check: {} -> {}".format(report.checkpoint or "state dict", report.target),
             "  model {} tensors, checkpoint {} tensors ({}); matched in {:.1f} ms".format(
                 report.model_keys, report.checkpoint_keys, report.checkpoint_kind,
                 report.match_ms),
             "  loaded {} ({:.1%} of {}){}, shape mismatch {}, missing {}, unused in "
             "checkpoint {}, ambiguous {}".format(
                 report.loaded, report.loaded_ratio, report.ratio_basis,
                 " incl. {} through the QAT wrapper name".format(
                     report.loaded_through_wrapper) if report.loaded_through_wrapper else "",
                 report.count("shape_mismatch"), report.count("missing"),
                 report.count("unused"), report.count("ambiguous")),
             ""]
    lines += _part_table(report, verbose, max_rows)
    lines += _difference_lines(report, verbose, max_rows)
    lines += _diagnosis_lines(report)
    lines.append("Verdict: {}{}".format(report.verdict.upper(), " - " + "; ".join(
        report.reasons) if report.reasons else ""))
    lines += ["  " + a for a in report.advice]
    return "\n".join(lines)


def _part_table(report, verbose, max_rows):
    lines = ["  {:<34} {:>6} {:>7} {:>7} {:>6} {:>8}".format(
        "part", "model", "loaded", "%", "shape", "missing")]
    hidden = 0
    for row in report.parts:
        is_block = "." in row.part
        clean = row.loaded == row.total
        if is_block and clean and not verbose:
            continue
        if is_block and not verbose and max_rows <= 0:
            hidden += 1
            continue
        if is_block:
            max_rows -= 1
        name = ("  " + row.part) if is_block else row.part
        lines.append("  {:<34} {:>6} {:>7} {:>6.1f}% {:>6} {:>8}".format(
            name, row.total, row.loaded, row.loaded_pct, row.shape_mismatched,
            row.missing + row.ambiguous))
    if hidden:
        lines.append("  ... {} more blocks with differences (--verbose shows all)".format(
            hidden))
    if report.unused_by_part:
        top = sorted(report.unused_by_part.items(), key=lambda kv: -kv[1])
        shown = top if verbose else top[:6]
        lines.append("  unused checkpoint tensors: " + ", ".join(
            "{} {}".format(p, n) for p, n in shown)
            + (" ..." if len(shown) < len(top) else ""))
    lines.append("")
    return lines


def _difference_lines(report, verbose, max_rows):
    lines = []
    by_category = OrderedDict()
    for d in report.differences:
        by_category.setdefault(d.category, []).append(d)
    suspicious = by_category.pop(SUSPICIOUS, [])
    if suspicious:
        lines.append("Suspicious differences ({}):".format(len(suspicious)))
        shown = suspicious if verbose else suspicious[:max_rows]
        lines += ["  " + _difference_text(d) for d in shown]
        if len(shown) < len(suspicious):
            lines.append("  ... {} more (--verbose or --json lists every key)".format(
                len(suspicious) - len(shown)))
    for category, items in by_category.items():
        kinds = Counter(_KIND_LABEL[d.kind] for d in items)
        lines.append("Expected ({}): {} - {}".format(
            category, ", ".join("{} {}".format(n, k) for k, n in sorted(kinds.items())),
            EXPECTED_REASONS[category]))
        if verbose:
            lines += ["  " + _difference_text(d) for d in items]
    if lines:
        lines.append("")
    return lines


def _diagnosis_lines(report):
    diag = report.diagnosis
    if not diag:
        return []
    lines = ["Diagnosis:", "  checkpoint: {}".format(diag["checkpoint_describes"])]
    if diag.get("config_describes"):
        lines.append("  config:     {}".format(diag["config_describes"]))
    for label, config_value, ckpt_value in diag.get("differences", []):
        lines.append("  {}: config {}, checkpoint {}".format(label, config_value,
                                                             ckpt_value))
    lines += ["  " + note for note in diag.get("notes", [])]
    lines.append("")
    return lines


def _difference_text(d):
    shapes = ""
    if d.model_shape is not None or d.ckpt_shape is not None:
        shapes = "  model {} checkpoint {}".format(
            list(d.model_shape) if d.model_shape is not None else "-",
            list(d.ckpt_shape) if d.ckpt_shape is not None else "-")
    other = " <- {}".format(d.other_key) if d.other_key and d.other_key != d.key else ""
    return "{:<9} {}{}{}".format(_KIND_LABEL[d.kind], d.key, other, shapes)
