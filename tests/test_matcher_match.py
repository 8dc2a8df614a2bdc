"""Key matching: the pairs ppdet's loader makes, found in linear time."""
from types import SimpleNamespace

import pytest

from slimext.matcher import match_keys
from slimext.matcher.model_shapes import model_shapes

from matcher_helpers import M320, S320, build

FOUR_LEVELS = [0.125, 0.0625, 0.03125, 0.015625]


@pytest.fixture(scope="module")
def s_and_m_shapes():
    return (model_shapes(build(S320, initialize=False)),
            model_shapes(build(M320, initialize=False)))


def _as_tensors(shapes):
    return {k: SimpleNamespace(shape=list(v)) for k, v in shapes.items()}


def test_pairs_equal_ppdets_match_state_dict(s_and_m_shapes):
    from ppdet.utils.checkpoint import match_state_dict

    model, ckpt = s_and_m_shapes
    ckpt = {k: v for k, v in ckpt.items() if not k.startswith("head.head_cls")}  # no overlap
    ours = match_keys(model, ckpt)
    theirs = match_state_dict(_as_tensors(model), _as_tensors(ckpt))
    assert {p.model_key for p in ours.loaded} == set(theirs)


def test_checkpoint_without_prefix_matches_by_dotted_suffix():
    model = {"backbone.blocks2.0.dw_conv.conv.weight": (8, 1, 3, 3)}
    match = match_keys(model, {"blocks2.0.dw_conv.conv.weight": (8, 1, 3, 3),
                               "0.dw_conv.conv.weight": (8, 1, 3, 3)})
    assert [p.ckpt_key for p in match.loaded] == ["blocks2.0.dw_conv.conv.weight"]
    assert match.unused == ["0.dw_conv.conv.weight"]


def test_partial_name_is_no_match():
    match = match_keys({"backbone.xconv.weight": (1,)}, {"conv.weight": (1,)})
    assert match.missing == ["backbone.xconv.weight"] and match.unused == ["conv.weight"]


def test_one_checkpoint_key_for_two_model_keys_is_reported_ambiguous():
    model = {"neck.a.conv.weight": (4,), "head.b.conv.weight": (4,)}
    match = match_keys(model, {"conv.weight": (4,)})
    assert match.ambiguous == {"conv.weight": ["head.b.conv.weight", "neck.a.conv.weight"]}
    assert not match.loaded


def test_qat_wrapper_level_is_matched_both_ways():
    float_keys = {"backbone.conv1.conv.weight": (8, 3, 3, 3)}
    qat_keys = {"backbone.conv1.conv._layer.weight": (8, 3, 3, 3)}
    for model, ckpt in ((float_keys, qat_keys), (qat_keys, float_keys)):
        (pair,) = match_keys(model, ckpt).loaded
        assert pair.through_wrapper


def test_463_by_593_keys_match_as_ppdet_pairs_them(s_and_m_shapes):
    model, _ = s_and_m_shapes
    # PicoDet-M with a 4-entry LCPAN spatial_scales: what ppdet builds for M when another
    # LCPAN was built before in the same process (its list default grows)
    wider = model_shapes(build(M320, initialize=False, LCPAN={"spatial_scales": FOUR_LEVELS}))
    assert (len(model), len(wider)) == (463, 593)
    match = match_keys(model, wider)
    assert len(match.loaded) + len(match.shape_mismatched) + len(match.missing) == len(model)


def _comparisons(model, ckpt, monkeypatch):
    """How many key comparisons and name normalisations one match makes."""
    from slimext.matcher import match as module

    counts = {"n": 0}

    def counted(function):
        def call(*args, **kwargs):
            counts["n"] += 1
            return function(*args, **kwargs)
        return call

    with monkeypatch.context() as patch:
        for name in ("_is_plain_suffix", "canonical", "dotted_suffixes"):
            patch.setattr(module, name, counted(getattr(module, name)))
        module.match_keys(model, ckpt)
    return counts["n"]


def _synthetic_keys(blocks):
    model = {"backbone.blocks.{}.conv{}.weight".format(b, c): (8, 8, 3, 3)
             for b in range(blocks) for c in range(3)}
    ckpt = {"blocks.{}.conv{}.weight".format(b, c): (8, 8, 3, 3)
            for b in range(blocks) for c in range(3)}
    ckpt.update({"head.extra.{}.weight".format(b): (4,) for b in range(blocks)})
    return model, ckpt


def test_matching_work_grows_linearly_with_the_number_of_keys(monkeypatch):
    # Work is counted, not timed: twice the keys must cost about twice the comparisons
    # (ppdet's loop: four times). The timings are in benchmarks/matcher_speed.py.
    small = _comparisons(*_synthetic_keys(200), monkeypatch)
    large = _comparisons(*_synthetic_keys(400), monkeypatch)
    assert small > 0
    assert large <= 2.2 * small


def test_one_checkpoint_key_fitting_one_of_two_model_keys_loads_there_like_ppdet():
    model = {"neck.a.conv.weight": (4,), "head.b.conv.weight": (8,)}
    match = match_keys(model, {"conv.weight": (4,)})
    assert [p.model_key for p in match.loaded] == ["neck.a.conv.weight"]
    assert [p.model_key for p in match.shape_mismatched] == ["head.b.conv.weight"]
