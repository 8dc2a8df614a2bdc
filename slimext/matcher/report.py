"""WeightMatchReport: counts by part, classified differences, diagnosis and verdict."""
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from slimext.fileio import atomic_write_json, atomic_write_text
from slimext.matcher.classify import EXPECTED_REASONS, SUSPICIOUS
from slimext.matcher.keys import block_of, is_quantizer_state, module_of

NOTABLE_EXPECTED = ("class_count",)  # expected, yet they make the verdict `warn`
_KIND_LABEL = {"shape_mismatch": "shape", "missing": "missing", "unused": "unused",
               "ambiguous": "ambiguous"}


@dataclass
class PartCounts:
    part: str
    total: int = 0
    loaded: int = 0
    shape_mismatched: int = 0
    missing: int = 0
    ambiguous: int = 0

    @property
    def loaded_pct(self):
        return 100.0 * self.loaded / self.total if self.total else 0.0


@dataclass
class WeightMatchReport:
    checkpoint: str
    target: str
    checkpoint_kind: str
    model_keys: int
    checkpoint_keys: int
    loaded: int
    loaded_through_wrapper: int
    loaded_ratio: float          # over the tensors the checkpoint is meant to provide
    ratio_basis: str             # what that denominator is
    match_ms: float
    parts: list                  # PartCounts per module, then per block
    unused_by_part: dict         # checkpoint block -> count
    differences: list            # classify.Difference
    diagnosis: dict = field(default_factory=dict)
    verdict: str = "ok"
    reasons: list = field(default_factory=list)
    advice: list = field(default_factory=list)
    loaded_pairs: list = field(default_factory=list)  # (model key, ckpt key) for details

    # -- counts ----------------------------------------------------------------------------
    def count(self, kind=None, category=None):
        return sum(1 for d in self.differences
                   if (kind is None or d.kind == kind)
                   and (category is None or d.category == category))

    @property
    def suspicious(self):
        return self.count(category=SUSPICIOUS)

    @property
    def notable_expected(self):
        return sum(self.count(category=c) for c in NOTABLE_EXPECTED)

    def summary_line(self):
        """One line for a training log."""
        text = ("weight check {}: loaded {}/{} tensors ({:.1%} of {}) from {}; {} shape "
                "mismatch, {} missing, {} unused, {} suspicious".format(
                    self.verdict.upper(), self.loaded, self.model_keys, self.loaded_ratio,
                    self.ratio_basis, self.checkpoint or "state dict",
                    self.count("shape_mismatch"), self.count("missing"),
                    self.count("unused"), self.suspicious))
        expected = Counter(d.category for d in self.differences if d.expected)
        if expected:
            text += "; expected: " + ", ".join("{} {}".format(n, c) for c, n in
                                               sorted(expected.items()))
        return text

    # -- text ------------------------------------------------------------------------------
    def format_text(self, verbose=False, max_rows=8):
        lines = ["Weight check: {} -> {}".format(self.checkpoint or "state dict", self.target),
                 "  model {} tensors, checkpoint {} tensors ({}); matched in {:.1f} ms".format(
                     self.model_keys, self.checkpoint_keys, self.checkpoint_kind,
                     self.match_ms),
                 "  loaded {} ({:.1%} of {}){}, shape mismatch {}, missing {}, unused in "
                 "checkpoint {}, ambiguous {}".format(
                     self.loaded, self.loaded_ratio, self.ratio_basis,
                     " incl. {} through the QAT wrapper name".format(
                         self.loaded_through_wrapper) if self.loaded_through_wrapper else "",
                     self.count("shape_mismatch"), self.count("missing"),
                     self.count("unused"), self.count("ambiguous")),
                 ""]
        lines += self._part_table(verbose, max_rows)
        lines += self._difference_lines(verbose, max_rows)
        lines += self._diagnosis_lines()
        lines.append("Verdict: {}{}".format(self.verdict.upper(), " - " + "; ".join(
            self.reasons) if self.reasons else ""))
        lines += ["  " + a for a in self.advice]
        return "\n".join(lines)

    def _part_table(self, verbose, max_rows):
        lines = ["  {:<34} {:>6} {:>7} {:>7} {:>6} {:>8}".format(
            "part", "model", "loaded", "%", "shape", "missing")]
        hidden = 0
        for row in self.parts:
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
        if self.unused_by_part:
            top = sorted(self.unused_by_part.items(), key=lambda kv: -kv[1])
            shown = top if verbose else top[:6]
            lines.append("  unused checkpoint tensors: " + ", ".join(
                "{} {}".format(p, n) for p, n in shown)
                + (" ..." if len(shown) < len(top) else ""))
        lines.append("")
        return lines

    def _difference_lines(self, verbose, max_rows):
        lines = []
        by_category = OrderedDict()
        for d in self.differences:
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

    def _diagnosis_lines(self):
        diag = self.diagnosis
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

    # -- data ------------------------------------------------------------------------------
    def to_dict(self):
        return {
            "checkpoint": self.checkpoint, "target": self.target,
            "checkpoint_kind": self.checkpoint_kind, "verdict": self.verdict,
            "reasons": self.reasons, "advice": self.advice,
            "counts": {"model_keys": self.model_keys, "checkpoint_keys": self.checkpoint_keys,
                       "loaded": self.loaded,
                       "loaded_through_wrapper": self.loaded_through_wrapper,
                       "shape_mismatched": self.count("shape_mismatch"),
                       "missing": self.count("missing"), "unused": self.count("unused"),
                       "ambiguous": self.count("ambiguous"), "suspicious": self.suspicious,
                       "expected": len(self.differences) - self.suspicious},
            "loaded_ratio": self.loaded_ratio, "ratio_basis": self.ratio_basis,
            "match_ms": self.match_ms,
            "parts": [dict(vars(p), loaded_pct=round(p.loaded_pct, 2)) for p in self.parts],
            "unused_by_part": self.unused_by_part,
            "diagnosis": self.diagnosis,
            "differences": [{"kind": d.kind, "key": d.key, "other_key": d.other_key,
                             "model_shape": d.model_shape, "checkpoint_shape": d.ckpt_shape,
                             "category": d.category, "expected": d.expected}
                            for d in self.differences],
            "loaded_keys": [{"model_key": m, "checkpoint_key": c}
                            for m, c in self.loaded_pairs],
        }

    def write_json(self, path):
        atomic_write_json(path, self.to_dict(), indent=1)

    def detail_lines(self):
        """Every key's outcome, one per line: what ppdet used to log, in a file."""
        lines = ["loaded\t{}\t<- {}".format(m, c) for m, c in self.loaded_pairs]
        lines += ["{}\t{}\t{}\t{}\tmodel {} checkpoint {}".format(
            d.kind, d.category, d.key, d.other_key or "", list(d.model_shape or ()),
            list(d.ckpt_shape or ())) for d in self.differences]
        return lines

    def write_details(self, path):
        atomic_write_text(path, "\n".join(self.detail_lines()) + "\n")


def _difference_text(d):
    shapes = ""
    if d.model_shape is not None or d.ckpt_shape is not None:
        shapes = "  model {} checkpoint {}".format(
            list(d.model_shape) if d.model_shape is not None else "-",
            list(d.ckpt_shape) if d.ckpt_shape is not None else "-")
    other = " <- {}".format(d.other_key) if d.other_key and d.other_key != d.key else ""
    return "{:<9} {}{}{}".format(_KIND_LABEL[d.kind], d.key, other, shapes)


def part_counts(match, ambiguous_keys):
    """PartCounts per module and per block, modules in model order, blocks within."""
    rows = OrderedDict()
    status = {p.model_key: "loaded" for p in match.loaded}
    status.update({p.model_key: "shape" for p in match.shape_mismatched})
    status.update({k: "ambiguous" for k in ambiguous_keys})
    for key in match.model_shapes:
        if is_quantizer_state(key):
            continue  # parts count the model's own tensors; quantizer state is listed apart
        for name in (module_of(key), block_of(key)):
            row = rows.setdefault(name, PartCounts(name))
            row.total += 1
            outcome = status.get(key, "missing")
            if outcome == "loaded":
                row.loaded += 1
            elif outcome == "shape":
                row.shape_mismatched += 1
            elif outcome == "ambiguous":
                row.ambiguous += 1
            else:
                row.missing += 1
    modules = [r for r in rows.values() if "." not in r.part]
    ordered = []
    for module in modules:
        ordered.append(module)
        ordered += [r for r in rows.values() if r.part.startswith(module.part + ".")]
    return ordered


def unused_counts(match):
    return dict(Counter(block_of(k) for k in match.unused))
