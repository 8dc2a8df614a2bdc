"""Turn the most sensitive units into quantization rules and a ready slim YAML.

A layer unit becomes `{match: <layer path>, weight_bits: 16, activation_bits: 16}` (keep 16)
or `{match: <layer path>, skip: true}` (keep float). A join's rule addresses the join site
(`neck:add#0`), and bits are set per join, so keeping one of its quantizers at 16 bits raises
the whole join. Keeping a single join quantizer in float drops just its places (`inputs`,
`output`); when nothing of the join is left, the join is skipped.
"""
import os
import re

import yaml

KEEP_CHOICES = ("16", "float")


def glob_escape(name):
    """A `match` pattern that matches exactly `name` (fnmatch's [ ] * ? made literal)."""
    return re.sub(r"([*?\[\]])", r"[\1]", name)


def _layer_rule(unit, keep):
    if keep == "float":
        return {"match": glob_escape(unit.site), "skip": True}
    return {"match": glob_escape(unit.site), "weight_bits": 16, "activation_bits": 16}


def _places(plan, names):
    """Member places ('in0', 'out', ...) of the given join quantizer names."""
    return {member.rsplit("/", 1)[1] for name in names for member in plan.quantizers[name].members}


def _join_float_rule(plan, site, kept_names):
    placement = next(j for j in plan.joins if j.site == site)
    all_names = set(placement.inputs.values()) | ({placement.output} if placement.output else set())
    remaining = _places(plan, all_names) - _places(plan, kept_names)
    if not remaining:
        return {"match": glob_escape(site), "skip": True}
    inputs = sorted(int(p[2:]) for p in remaining if p.startswith("in"))
    return {"match": glob_escape(site), "inputs": inputs if inputs else "none",
            "output": "out" in remaining}


def _join_rule(plan, site, kept_names, keep):
    if keep == "16":
        return {"match": glob_escape(site), "activation_bits": 16}
    return _join_float_rule(plan, site, kept_names)


def suggest_rules(units, plan, keep="16"):
    """Rules that keep `units` (most sensitive first) at 16 bits or in float under `plan`.

    One rule per layer and one per join site, in rank order.
    """
    if keep not in KEEP_CHOICES:
        raise ValueError("keep must be one of {}, got {!r}".format("/".join(KEEP_CHOICES), keep))
    kept_per_site = {}
    for unit in units:
        if unit.kind == "join":
            kept_per_site.setdefault(unit.site, []).append(unit.name)
    rules, done = [], set()
    for unit in units:
        if unit.kind == "layer":
            rules.append(_layer_rule(unit, keep))
        elif unit.site not in done:
            done.add(unit.site)
            rules.append(_join_rule(plan, unit.site, kept_per_site[unit.site], keep))
    return rules


class SlimConfigCopyError(ValueError):
    """The slim config cannot be read as plain YAML, so it cannot be copied with new rules."""


def read_slim_yaml(path):
    """The slim config as plain data (checked before any measurement starts)."""
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as error:
        raise SlimConfigCopyError("slim config {!r} is not plain YAML ({}); the suggested "
                                  "config is a copy of it with rules added".format(path, error))
    if not isinstance(data, dict):
        raise SlimConfigCopyError("slim config {!r} is not a YAML mapping".format(path))
    return data


def suggested_slim_config(slim_config_path, method, rules_in_effect, new_rules):
    """The slim config's data with `new_rules` after the rules it already has (last wins).

    `rules_in_effect` are the rules the slim method was built with (they may come from a
    _BASE_ file); relative _BASE_ paths are made absolute so the copy loads from anywhere.
    """
    data = read_slim_yaml(slim_config_path)
    base = data.get("_BASE_")
    if base:
        folder = os.path.dirname(os.path.abspath(slim_config_path))
        paths = base if isinstance(base, list) else [base]
        data["_BASE_"] = [p if os.path.isabs(p) else os.path.normpath(os.path.join(folder, p))
                          for p in paths]
    section = data.get(method) or {}
    section["rules"] = list(rules_in_effect or []) + list(new_rules)
    data[method] = section
    return data


def slim_yaml_text(data, header_lines):
    header = "".join("# {}\n".format(line) if line else "#\n" for line in header_lines)
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
