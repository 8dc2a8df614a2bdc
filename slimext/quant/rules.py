"""Per-layer and per-join quantization settings as ordered pattern rules (last match wins).

    rules:
      - {match: "head.*", weight_bits: 16}           # glob on the layer path or join site
      - {regex: "neck\\..*:concat#\\d+", share: all}   # or a regular expression
      - {type: Linear, skip: true}                     # or the layer type / join kind
"""
import fnmatch
import re
from dataclasses import dataclass, field
from typing import Dict, Optional

from slimext.quant.backends import INPUT_CHOICES, SHARE_CHOICES

SELECTORS = ("match", "regex", "type")
SETTINGS = ("weight_bits", "activation_bits", "symmetric", "skip", "inputs", "output", "share")


class RuleError(ValueError):
    """A rule that cannot be applied; the message names the rule and the fix."""


@dataclass
class QuantRule:
    index: int
    match: Optional[str] = None
    regex: Optional[str] = None
    type: Optional[str] = None
    settings: Dict[str, object] = field(default_factory=dict)
    hits: int = 0

    def label(self):
        selector = ", ".join("{}={}".format(k, getattr(self, k)) for k in SELECTORS
                             if getattr(self, k) is not None)
        return "rule {} ({})".format(self.index, selector)

    def matches(self, name, types):
        if self.match is not None and not fnmatch.fnmatchcase(name, self.match):
            return False
        if self.regex is not None and not re.fullmatch(self.regex, name):
            return False
        if self.type is not None and self.type not in types:
            return False
        return True


def _check_setting(index, key, value):
    where = "quantization rule {}".format(index)
    if key in ("weight_bits", "activation_bits"):
        if not isinstance(value, int) or isinstance(value, bool) or not 2 <= value <= 16:
            raise RuleError("{}: {} must be an integer from 2 to 16, got {!r}".format(
                where, key, value))
    elif key in ("symmetric", "skip", "output"):
        if not isinstance(value, bool):
            raise RuleError("{}: {} must be true or false, got {!r}".format(where, key, value))
        if key == "symmetric" and not value:
            raise RuleError("{}: asymmetric quantization is not supported: Paddle's QDQ format "
                            "and the oneDNN/TensorRT INT8 passes use symmetric scales; "
                            "remove `symmetric: false`".format(where))
    elif key == "inputs":
        ok = value in INPUT_CHOICES or (isinstance(value, list) and
                                        all(isinstance(i, int) for i in value))
        if not ok:
            raise RuleError("{}: inputs must be one of {} or a list of operand indexes, got {!r}"
                            .format(where, "/".join(INPUT_CHOICES), value))
    elif key == "share" and value not in SHARE_CHOICES:
        raise RuleError("{}: share must be one of {}, got {!r}".format(
            where, "/".join(SHARE_CHOICES), value))


def parse_rules(raw_rules):
    """Validate YAML rules into QuantRule objects; unknown keys and bad values raise."""
    rules = []
    for index, raw in enumerate(raw_rules or []):
        if not isinstance(raw, dict):
            raise RuleError("quantization rule {} must be a mapping such as "
                            "{{match: 'head.*', activation_bits: 16}}, got {!r}".format(index, raw))
        unknown = sorted(set(raw) - set(SELECTORS) - set(SETTINGS))
        if unknown:
            raise RuleError("quantization rule {}: unknown key(s) {}; selectors are {}, "
                            "settings are {}".format(index, ", ".join(unknown),
                                                     ", ".join(SELECTORS), ", ".join(SETTINGS)))
        if not any(raw.get(k) is not None for k in SELECTORS):
            raise RuleError("quantization rule {} selects nothing: give match, regex or type"
                            .format(index))
        if raw.get("regex") is not None:
            try:
                re.compile(raw["regex"])
            except re.error as error:
                raise RuleError("quantization rule {}: bad regex {!r}: {}".format(
                    index, raw["regex"], error))
        settings = {k: raw[k] for k in SETTINGS if k in raw}
        for key, value in settings.items():
            _check_setting(index, key, value)
        rules.append(QuantRule(index, raw.get("match"), raw.get("regex"), raw.get("type"),
                               settings))
    return rules


def resolve(rules, name, types, defaults):
    """Settings for one layer/join: defaults, then every matching rule in order.

    Returns (settings, source) where source names the last rule that matched, or
    "default".
    """
    settings = dict(defaults)
    source = "default"
    for rule in rules:
        if rule.matches(name, types):
            rule.hits += 1
            settings.update(rule.settings)
            source = "rule {}".format(rule.index)
    return settings, source


def check_all_matched(rules):
    unmatched = [rule for rule in rules if rule.hits == 0]
    if unmatched:
        raise RuleError("{} matched no layer or join; check the pattern against the plan "
                        "printout (layer paths like 'backbone.conv1', join sites like "
                        "'neck:add#0')".format("; ".join(r.label() for r in unmatched)))
