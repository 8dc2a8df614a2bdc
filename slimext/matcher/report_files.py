"""The weight check report as files: JSON data and the per-key detail list."""
from slimext.fileio import atomic_write_json, atomic_write_text


def report_dict(report):
    """The report as JSON data: every count, part, difference and loaded key."""
    return {
        "checkpoint": report.checkpoint, "target": report.target,
        "checkpoint_kind": report.checkpoint_kind, "verdict": report.verdict,
        "reasons": report.reasons, "advice": report.advice,
        "counts": {"model_keys": report.model_keys, "checkpoint_keys": report.checkpoint_keys,
                   "loaded": report.loaded,
                   "loaded_through_wrapper": report.loaded_through_wrapper,
                   "shape_mismatched": report.count("shape_mismatch"),
                   "missing": report.count("missing"), "unused": report.count("unused"),
                   "ambiguous": report.count("ambiguous"), "suspicious": report.suspicious,
                   "expected": len(report.differences) - report.suspicious},
        "loaded_ratio": report.loaded_ratio, "ratio_basis": report.ratio_basis,
        "match_ms": report.match_ms,
        "parts": [dict(vars(p), loaded_pct=round(p.loaded_pct, 2)) for p in report.parts],
        "unused_by_part": report.unused_by_part,
        "diagnosis": report.diagnosis,
        "differences": [{"kind": d.kind, "key": d.key, "other_key": d.other_key,
                         "model_shape": d.model_shape, "checkpoint_shape": d.ckpt_shape,
                         "category": d.category, "expected": d.expected}
                        for d in report.differences],
        "loaded_keys": [{"model_key": m, "checkpoint_key": c}
                        for m, c in report.loaded_pairs],
    }


def write_report_json(report, path):
    atomic_write_json(path, report_dict(report), indent=1)


def detail_lines(report):
    """Every key's outcome, one per line: what ppdet used to log, in a file."""
    lines = ["loaded\t{}\t<- {}".format(m, c) for m, c in report.loaded_pairs]
    lines += ["{}\t{}\t{}\t{}\tmodel {} checkpoint {}".format(
        d.kind, d.category, d.key, d.other_key or "", list(d.model_shape or ()),
        list(d.ckpt_shape or ())) for d in report.differences]
    return lines


def write_details(report, path):
    atomic_write_text(path, "\n".join(detail_lines(report)) + "\n")
