"""WeightMatchReport: counts by part, classified differences, diagnosis and verdict (the
data; report_text renders it, report_files writes it)."""
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from slimext.matcher.classify import SUSPICIOUS
from slimext.matcher.keys import block_of, is_quantizer_state, module_of

NOTABLE_EXPECTED = ("class_count",)  # expected, yet they make the verdict `warn`


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

    # -- text and files (slimext.matcher.report_text, slimext.matcher.report_files) -------
    def format_text(self, verbose=False, max_rows=8):
        from slimext.matcher.report_text import format_report

        return format_report(self, verbose, max_rows)

    def to_dict(self):
        from slimext.matcher.report_files import report_dict

        return report_dict(self)

    def write_json(self, path):
        from slimext.matcher.report_files import write_report_json

        write_report_json(self, path)

    def detail_lines(self):
        from slimext.matcher.report_files import detail_lines

        return detail_lines(self)

    def write_details(self, path):
        from slimext.matcher.report_files import write_details

        write_details(self, path)


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
