"""The quantization plan: which places get quantizers, which share one scale, which bits.

A plan is plain data built from the discovered joins, the quantizable layers, a backend
profile and the user's rules. It can be printed, compared and tested without training.
"""
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

from slimext.quant.backends import get_backend
from slimext.quant.rules import RuleError, check_all_matched, parse_rules, resolve


# `source` of a layer the model marks float itself (a `skip_quant` attribute, as ppdet sets).
MODEL_SKIP = "model skip_quant"


@dataclass
class QuantizerSpec:
    """One quantizer object; with several members it is a shared-scale group."""
    name: str
    bits: int
    members: List[str]
    source: str

    @property
    def shared(self):
        return len(self.members) > 1


@dataclass
class JoinPlacement:
    site: str
    kind: str
    layer_type: str
    inputs: Dict[int, str] = field(default_factory=dict)   # operand index -> quantizer name
    output: Optional[str] = None
    skipped: Optional[str] = None
    signature: tuple = ()


@dataclass
class LayerSetting:
    path: str
    type: str
    weight_bits: int
    activation_bits: int
    source: str
    skipped: bool = False


@dataclass
class QuantPlan:
    backend: str
    joins: List[JoinPlacement]
    quantizers: Dict[str, QuantizerSpec]
    layers: List[LayerSetting]

    @property
    def shared_groups(self):
        return [q for q in self.quantizers.values() if q.shared]

    def active_joins(self):
        return [j for j in self.joins if j.skipped is None]

    def quantized_layers(self):
        return [layer for layer in self.layers if not layer.skipped]

    def float_on_backend(self, spec_bits):
        return spec_bits not in get_backend(self.backend).executable_bits

    def to_dict(self):
        return asdict(self)

    def summary(self):
        """The plan in one line (the table's first line)."""
        return ("Quantization plan (backend: {}): {} joins quantized, {} skipped, "
                "{} quantizers ({} shared groups), {} of {} conv/linear layers "
                "quantized".format(
                    self.backend, len(self.active_joins()),
                    len(self.joins) - len(self.active_joins()), len(self.quantizers),
                    len(self.shared_groups), len(self.quantized_layers()),
                    len(self.layers)))

    def table(self):
        lines = [self.summary()]
        lines.append("")
        lines.append("{:<44} {:<6} {:>4}  {:<10} {}".format("join quantizer", "shared", "bits",
                                                           "set by", "places"))
        for spec in self.quantizers.values():
            note = " (float on {})".format(self.backend) if self.float_on_backend(spec.bits) else ""
            lines.append("{:<44} {:<6} {:>4}  {:<10} {}{}".format(
                spec.name, "yes" if spec.shared else "no", spec.bits, spec.source,
                ", ".join(spec.members), note))
        skipped = [j for j in self.joins if j.skipped]
        if skipped:
            lines.append("")
            lines.append("joins left in float:")
            lines.extend("  {:<42} {}".format(j.site, j.skipped) for j in skipped)
        lines.append("")
        lines.append("{:<44} {:<8} {:>4} {:>4}  {}".format("layer", "type", "w", "a", "set by"))
        for layer in self.layers:
            bits = ("float", "") if layer.skipped else (layer.weight_bits, layer.activation_bits)
            lines.append("{:<44} {:<8} {:>4} {:>4}  {}".format(
                layer.path, layer.type, bits[0], bits[1], layer.source))
        if any(layer.source == MODEL_SKIP for layer in self.layers):
            lines.append("")
            lines.append("'{}': the model marks the layer float (ppdet does for PP-YOLOE's DFL "
                         "projection); it stays float on every backend, its integer weights "
                         "stored as an exact INT8 copy so oneDNN's INT8 pass accepts it; a "
                         "rule with skip: false quantizes it".format(MODEL_SKIP))
        return "\n".join(lines)

    def __str__(self):
        return self.table()


def _input_indices(join, choice):
    activations = join.activation_inputs
    if choice == "all":
        return activations
    if choice == "skip":
        skip = join.skip_input()
        return [] if skip is None else [skip]
    if choice == "none":
        return []
    bad = [i for i in choice if i not in activations]
    if bad:
        raise RuleError("join {} has activation inputs {}; operand(s) {} cannot be quantized"
                        .format(join.site, activations, bad))
    return list(choice)


def _place_join(join, settings, source, quantizers):
    placement = JoinPlacement(join.site, join.kind, join.layer_type,
                              signature=join.signature())
    if settings["skip"]:
        placement.skipped = "skip set by {}".format(source)
        return placement
    if not join.followed_by_quantizable:
        placement.skipped = "no conv/linear uses its output (post-processing or loss)"
        return placement
    members = ["{}/in{}".format(join.site, i)
               for i in _input_indices(join, settings["inputs"])]
    if settings["output"]:
        members.append("{}/out".format(join.site))
    if not members:
        placement.skipped = "no quantizer places (inputs: none, output: false)"
        return placement
    if settings["share"] == "all":
        groups = {"{}/shared".format(join.site): members}
    else:
        groups = {member: [member] for member in members}
    for name, group_members in groups.items():
        quantizers[name] = QuantizerSpec(name, settings["activation_bits"], group_members, source)
        for member in group_members:
            place = member.rsplit("/", 1)[1]
            if place == "out":
                placement.output = name
            else:
                placement.inputs[int(place[2:])] = name
    return placement


def build_plan(joins, layers, backend="onednn", rules=None, weight_bits=8, activation_bits=8):
    """Plan for `joins` (JoinPoints) and `layers` ((path, type) of conv/linear layers, or
    (path, type, skip_quant) where the model itself marks a layer float)."""
    profile = get_backend(backend)
    parsed = parse_rules(rules)
    quantizers, placements, settings_of_layers = {}, [], []
    for join in joins:
        rule = profile.rule_for(join.kind)
        defaults = {"activation_bits": activation_bits, "symmetric": True, "skip": False,
                    "inputs": rule.inputs, "output": rule.output, "share": rule.share,
                    "weight_bits": weight_bits}
        settings, source = resolve(parsed, join.site, (join.layer_type, join.kind), defaults)
        placements.append(_place_join(join, settings, source, quantizers))
    for path, type_name, *marked in layers:
        # skip None: no rule decided, so the model's own skip_quant mark does.
        defaults = {"weight_bits": weight_bits, "activation_bits": activation_bits,
                    "symmetric": True, "skip": None}
        settings, source = resolve(parsed, path, (type_name,), defaults)
        skipped = settings["skip"]
        if skipped is None:
            skipped = bool(marked and marked[0])
            if skipped:
                source = MODEL_SKIP
        settings_of_layers.append(LayerSetting(path, type_name, settings["weight_bits"],
                                               settings["activation_bits"], source,
                                               bool(skipped)))
    check_all_matched(parsed)
    return QuantPlan(profile.name, placements, quantizers, settings_of_layers)


def plan_from_dict(data):
    """Inverse of QuantPlan.to_dict (used to re-validate an export from its sidecar)."""
    joins = []
    for j in data["joins"]:
        signature = j.get("signature") or ()
        if signature:
            signature = (signature[0], tuple(signature[1]))
        joins.append(JoinPlacement(j["site"], j["kind"], j["layer_type"],
                                   {int(k): v for k, v in j["inputs"].items()}, j["output"],
                                   j["skipped"], signature))
    # Exports written before the (always true) `symmetric` field was dropped still load.
    quantizers = {name: QuantizerSpec(**{k: v for k, v in spec.items() if k != "symmetric"})
                  for name, spec in data["quantizers"].items()}
    layers = [LayerSetting(**layer) for layer in data["layers"]]
    return QuantPlan(data["backend"], joins, quantizers, layers)
