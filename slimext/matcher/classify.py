"""Sort each difference between model and checkpoint into expected or suspicious."""
from dataclasses import dataclass

from slimext.matcher.keys import (canonical, is_class_layer, is_pact_alpha,
                                  is_quantizer_state, module_of)

# category -> why it is expected (suspicious differences have no entry)
EXPECTED_REASONS = {
    "quantizer_state": "quantizer state (scales, PACT alpha, observer buffers) exists on one "
                       "side only: float weights into a QAT model start their quantizers from "
                       "the observers; a QAT checkpoint's quantizer state has no place in a float "
                       "or test-mode model",
    "class_count": "classification layers sized for a different number of classes: expected "
                   "when fine-tuning on a new dataset; these layers start from their initializer",
    "backbone_only": "the checkpoint holds a backbone only (e.g. ImageNet pretraining): neck "
                     "and head start from their initializer",
    "classifier_part": "layers of the backbone's own classifier (e.g. ImageNet fc), which the "
                       "detector does not have",
}
SUSPICIOUS = "suspicious"


@dataclass(frozen=True)
class Difference:
    kind: str           # shape_mismatch | missing | unused | ambiguous
    key: str            # model key, or checkpoint key for `unused`
    other_key: str      # the key on the other side, if paired
    model_shape: tuple
    ckpt_shape: tuple
    category: str       # a key of EXPECTED_REASONS, or SUSPICIOUS

    @property
    def expected(self):
        return self.category != SUSPICIOUS


@dataclass(frozen=True)
class MatchContext:
    """Facts about both sides that decide what is expected."""
    model_quantized: bool
    ckpt_quantized: bool
    model_has_pact: bool
    ckpt_backbone_only: bool
    model_backbone_blocks: frozenset  # second name level under `backbone.`

    @classmethod
    def of(cls, match):
        model_keys, ckpt_keys = match.model_shapes, match.ckpt_shapes
        detector_ckpt = any(k.startswith(("neck.", "head.")) for k in ckpt_keys)
        detector_model = any(k.startswith(("neck.", "head.")) for k in model_keys)
        return cls(
            model_quantized=any(map(is_quantizer_state, model_keys)),
            ckpt_quantized=any(map(is_quantizer_state, ckpt_keys)),
            model_has_pact=any(map(is_pact_alpha, model_keys)),
            ckpt_backbone_only=detector_model and not detector_ckpt,
            model_backbone_blocks=frozenset(k.split(".")[1] for k in model_keys
                                            if k.startswith("backbone.") and k.count(".") > 1))


def classify(match):
    """Every difference of a KeyMatch as a Difference, in model-key then ckpt-key order."""
    ctx = MatchContext.of(match)
    out = []
    for pair in match.shape_mismatched:
        out.append(Difference("shape_mismatch", pair.model_key, pair.ckpt_key, pair.model_shape,
                              pair.ckpt_shape, _mismatch_category(pair, ctx)))
    for key in match.missing:
        out.append(Difference("missing", key, None, match.model_shapes[key], None,
                              _missing_category(key, ctx)))
    for ckpt_key, model_keys in match.ambiguous.items():
        for key in model_keys:
            out.append(Difference("ambiguous", key, ckpt_key, match.model_shapes[key],
                                  match.ckpt_shapes[ckpt_key], SUSPICIOUS))
    for key in match.unused:
        out.append(Difference("unused", key, None, None, match.ckpt_shapes[key],
                              _unused_category(key, ctx)))
    return out


def _mismatch_category(pair, ctx):
    a, b = pair.model_shape, pair.ckpt_shape
    if is_class_layer(pair.model_key) and len(a) == len(b) and a[1:] == b[1:]:
        return "class_count"
    # e.g. an ImageNet `fc.weight` whose name is also a suffix of the head's SE `fc.weight`
    if (ctx.ckpt_backbone_only and module_of(pair.model_key) != "backbone"
            and _is_classifier_part(pair.ckpt_key, ctx)):
        return "classifier_part"
    return SUSPICIOUS


def _missing_category(key, ctx):
    if is_quantizer_state(key) and not ctx.ckpt_quantized:
        return "quantizer_state"
    if ctx.ckpt_backbone_only and module_of(key) != "backbone":
        return "backbone_only"
    return SUSPICIOUS


def _unused_category(key, ctx):
    if is_quantizer_state(key) and (not ctx.model_quantized
                                    or (is_pact_alpha(key) and not ctx.model_has_pact)):
        return "quantizer_state"
    if ctx.ckpt_backbone_only and _is_classifier_part(key, ctx):
        return "classifier_part"
    return SUSPICIOUS


def _is_classifier_part(ckpt_key, ctx):
    """A backbone checkpoint's layer that the detector's backbone does not have."""
    name = canonical(ckpt_key)
    name = name[len("backbone."):] if name.startswith("backbone.") else name
    return name.split(".", 1)[0] not in ctx.model_backbone_blocks
