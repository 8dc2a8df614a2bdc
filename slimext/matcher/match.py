"""Pair model keys with checkpoint keys the way ppdet does, in one pass over the names.

ppdet's `match_state_dict` compares every model key with every checkpoint key (N*M) and
takes, per model key, the longest checkpoint key that equals it or is a dotted suffix of
it (so `blocks2.0.conv.weight` loads into `backbone.blocks2.0.conv.weight`). Indexing the
checkpoint keys by name and looking up each model key's dotted suffixes gives the same
pairs in time linear in the number of keys. One addition: names are compared without the
QAT wrapper level `_layer`, so float and QAT checkpoints pair with either kind of model.
"""
from dataclasses import dataclass, field

from slimext.matcher.keys import canonical, dotted_suffixes


@dataclass(frozen=True)
class KeyPair:
    model_key: str
    ckpt_key: str
    model_shape: tuple
    ckpt_shape: tuple
    through_wrapper: bool  # paired only after removing the QAT `_layer` level

    @property
    def shapes_agree(self):
        return self.model_shape == self.ckpt_shape


@dataclass
class KeyMatch:
    """Every model key and checkpoint key, sorted into exactly one outcome each."""
    loaded: list = field(default_factory=list)          # KeyPair, shapes agree
    shape_mismatched: list = field(default_factory=list)  # KeyPair, shapes differ
    missing: list = field(default_factory=list)         # model keys nothing matched
    unused: list = field(default_factory=list)          # checkpoint keys nothing took
    ambiguous: dict = field(default_factory=dict)       # ckpt key -> [model keys]
    model_shapes: dict = field(default_factory=dict)
    ckpt_shapes: dict = field(default_factory=dict)


def _ppdet_form(key):
    # ppdet's one special case: Faster R-CNN keeps res5 in the head, not the backbone.
    return key[len("backbone."):] if key.startswith("backbone.res5") else key


def _index(ckpt_keys):
    index = {}
    for key in ckpt_keys:
        index.setdefault(canonical(_ppdet_form(key)), []).append(key)
    for keys in index.values():
        if len(keys) > 1:  # ppdet prefers the longest name, then the first in sorted order
            keys.sort(key=lambda k: (-len(k), k))
    return index


def _is_plain_suffix(model_key, ckpt_key):
    form = _ppdet_form(ckpt_key)
    return model_key == form or model_key.endswith("." + form)


def match_keys(model_shapes, ckpt_shapes):
    """Pair the keys of two {name: shape} maps; see the module docstring for the rule."""
    index = _index(ckpt_shapes)
    chosen = {}
    for model_key in model_shapes:
        for suffix in dotted_suffixes(canonical(model_key)):
            candidates = index.get(suffix)
            if candidates:
                chosen.setdefault(candidates[0], []).append(model_key)
                break

    result = KeyMatch(model_shapes=model_shapes, ckpt_shapes=ckpt_shapes)
    matched_model_keys = set()
    for ckpt_key, model_keys in chosen.items():
        matched_model_keys.update(model_keys)
        pairs = [KeyPair(k, ckpt_key, tuple(model_shapes[k]), tuple(ckpt_shapes[ckpt_key]),
                         through_wrapper=not _is_plain_suffix(k, ckpt_key))
                 for k in model_keys]
        fitting = [p for p in pairs if p.shapes_agree]
        if len(fitting) > 1:  # ppdet raises here: one tensor would load into several places
            result.ambiguous[ckpt_key] = sorted(p.model_key for p in fitting)
        else:
            result.loaded += fitting
        result.shape_mismatched += [p for p in pairs if not p.shapes_agree]
    result.missing = [k for k in model_shapes if k not in matched_model_keys]
    result.unused = [k for k in ckpt_shapes if k not in chosen]
    return result
