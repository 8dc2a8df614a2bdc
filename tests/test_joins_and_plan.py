"""Join discovery and the per-backend quantization plan (no training, no export)."""
import pytest

from quant_models import (Attention, GatedNet, MixedJoins, ResidualNet, TwoLevelBoxes,
                          TwoLevelScores, example_input, tokens_input)
from slimext.quant import build_plan, discover_joins
from slimext.quant.joins import trace_joins
from slimext.quant.rules import RuleError


def joins_of(model):
    model.eval()
    return {j.site: j for j in discover_joins(model, [example_input()])}


def test_finds_joins_written_every_way():
    joins = joins_of(MixedJoins())
    assert set(joins) == {
        "<model>:add#1", "<model>:add#2", "<model>:add#3",   # loop of `x + branch(x)`
        "inner:add#0",                                     # nested sublayer
        "<model>:add#4",                                   # paddle.add
        "<model>:concat#0",
        "<model>:subtract#0",
    }
    assert joins["<model>:concat#0"].kind == "concat"
    assert joins["inner:add#0"].layer_type == "ResidualBlock"


def test_constant_and_scalar_adds_are_not_joins():
    model = MixedJoins()
    model.eval()
    discovery = trace_joins(model, [example_input()])
    # `x + 1.0` gets no site at all (a path that runs more scalar arithmetic, e.g. a head's
    # training path generating anchors, then numbers its joins as discovery did); add#0 is
    # `x + self.offset` (a buffer): a site, not a join
    assert discovery.non_joins == ["<model>:add#0"]
    assert "<model>:add#0" not in {j.site for j in discovery.joins}


def test_training_path_with_more_scalar_arithmetic_keeps_the_planned_sites():
    import paddle

    from slimext.quant import build_plan
    from slimext.quant.apply import attach_join_quantizers

    class AnchorsWhenTraining(MixedJoins):
        def forward(self, x):
            if self.training:   # as PP-YOLOE's head: anchors generated on the training path
                _ = paddle.arange(4, dtype="float32") + 0.5
            return super().forward(x)

    class Calls:
        def __init__(self):
            self.names = []

        def observe(self, name, x, q):
            self.names.append(name)

    model = AnchorsWhenTraining()
    model.eval()
    plan = build_plan(discover_joins(model, [example_input()]), [], "onednn")
    handler = attach_join_quantizers(model, plan)
    try:
        calls = {}
        for mode in ("eval", "train"):
            getattr(model, mode)()
            handler.add_observer(Calls())
            model(example_input())
            calls[mode] = handler.observers.pop().names
        # The same quantizers at the same joins: with `+ 0.5` taking a site, every later
        # add moved up one and a buffer add took the first residual's quantizers.
        assert calls["train"] == calls["eval"] and calls["eval"]
    finally:
        handler.remove()


def test_residual_add_names_its_producers_and_skip_input():
    join = joins_of(ResidualNet())["blocks.0:add#0"]
    assert join.operands[0].producer == "blocks.0.bn2"
    assert join.skip_input() == 1  # the identity was produced before the branch


def _residual_plan(backend):
    return build_plan(list(joins_of(ResidualNet(blocks=1)).values()), [], backend)


def test_onednn_quantizes_both_inputs_and_output_with_own_scales():
    placement = _residual_plan("onednn").joins[0]
    assert sorted(placement.inputs) == [0, 1] and placement.output is not None
    assert len({placement.inputs[0], placement.inputs[1], placement.output}) == 3


def test_tensorrt_quantizes_only_the_skip_input():
    placement = _residual_plan("tensorrt").joins[0]
    assert list(placement.inputs) == [1] and placement.output is None


def test_shared_backend_makes_one_quantizer_for_the_whole_join():
    plan = _residual_plan("shared")
    placement = plan.joins[0]
    assert len(plan.quantizers) == 1
    assert placement.inputs[0] == placement.inputs[1] == placement.output
    assert plan.shared_groups[0].members == ["blocks.0:add#0/in0", "blocks.0:add#0/in1",
                                             "blocks.0:add#0/out"]


def test_concat_inputs_and_output_share_on_onednn():
    plan = build_plan(list(joins_of(MixedJoins()).values()), [], "onednn")
    group = plan.quantizers["<model>:concat#0/shared"]
    assert group.members == ["<model>:concat#0/in0", "<model>:concat#0/in1",
                             "<model>:concat#0/out"]


def test_se_gate_is_a_join_a_product_of_maps_a_multiply_a_scalar_neither():
    joins = joins_of(GatedNet())
    # x * sigmoid(...) with a [N, C, 1, 1] gate; `* 0.5` is not a join (and takes no
    # site); and the product of the two same-shaped maps is a plain multiply.
    assert set(joins) == {"se:gate#0", "<model>:multiply#0"}


def test_gate_is_quantized_on_onednn_only_and_a_product_of_maps_stays_float():
    joins = list(joins_of(GatedNet()).values())
    plan = build_plan(joins, [], "onednn")
    gate, product = plan.joins
    assert sorted(gate.inputs) == [0, 1] and gate.output is not None
    assert product.skipped and not product.inputs
    assert build_plan(joins, [], "tensorrt").joins[0].skipped
    ruled = build_plan(joins, [], "onednn", rules=[{"type": "multiply", "inputs": "all"}])
    assert sorted(ruled.joins[1].inputs) == [0, 1]


def test_attention_matmuls_are_joins_float_unless_a_rule_quantizes_them():
    model = Attention()
    model.eval()
    joins = {j.site: j for j in discover_joins(model, [tokens_input()])}
    assert set(joins) == {"<model>:matmul#0", "<model>:matmul#1"}
    assert all(j.kind == "matmul" and j.activation_inputs == [0, 1] for j in joins.values())
    for backend in ("onednn", "tensorrt", "shared"):
        plan = build_plan(list(joins.values()), [], backend)
        assert all(p.skipped for p in plan.joins) and not plan.quantizers, backend
    ruled = build_plan(list(joins.values()), [], "onednn",
                       rules=[{"type": "matmul", "inputs": "all"}])
    assert [sorted(p.inputs) for p in ruled.joins] == [[0, 1], [0, 1]]
    assert all(p.output is None for p in ruled.joins)


def test_a_score_product_no_layer_takes_stays_float_though_convs_run_after_it():
    joins = joins_of(TwoLevelScores())
    assert joins["<model>:gate#0"].kind == "gate"
    plan = build_plan(list(joins.values()), [], "onednn")
    skipped = {p.site: p.skipped for p in plan.joins if p.skipped}
    assert "<model>:gate#0" in skipped and "<model>:gate#1" in skipped
    assert not plan.quantizers


def test_box_corners_joined_before_later_convs_stay_float_a_join_a_conv_reads_does_not():
    joins = joins_of(TwoLevelBoxes())
    assert {"<model>:concat#0", "<model>:concat#1", "<model>:add#0"} <= set(joins)
    plan = build_plan(list(joins.values()), [], "onednn")
    skipped = {p.site: p.skipped for p in plan.joins if p.skipped}
    # level 0's corners are joined before level 1's conv runs; no conv reads them
    assert "no conv/linear uses its output" in skipped["<model>:concat#0"]
    assert "<model>:concat#1" in skipped
    assert "<model>:add#0" not in skipped


def test_rules_last_match_wins_and_are_reported():
    joins = list(joins_of(ResidualNet()).values())
    layers = [("stem", "Conv2D"), ("head", "Conv2D")]
    rules = [{"match": "blocks.*", "activation_bits": 16},
             {"regex": r"blocks\.1:add#\d+", "activation_bits": 8, "share": "all"},
             {"type": "Conv2D", "weight_bits": 4},
             {"match": "head", "skip": True}]
    plan = build_plan(joins, layers, "onednn", rules)
    assert plan.quantizers["blocks.0:add#0/out"].bits == 16
    assert plan.quantizers["blocks.0:add#0/out"].source == "rule 0"
    assert plan.quantizers["blocks.1:add#0/shared"].bits == 8
    stem, head = plan.layers
    assert (stem.weight_bits, stem.source) == (4, "rule 2")
    assert head.skipped and head.source == "rule 3"
    table = plan.table()
    assert "float on onednn" in table and "blocks.1:add#0/shared" in table


def test_rule_matching_nothing_is_an_error():
    joins = list(joins_of(ResidualNet()).values())
    with pytest.raises(RuleError, match="matched no layer or join"):
        build_plan(joins, [], "onednn", [{"match": "backbone.*", "activation_bits": 16}])


@pytest.mark.parametrize("rule, message", [
    ({"match": "*", "activation_bits": 17}, "from 2 to 16"),
    ({"match": "*", "bits": 8}, "unknown key"),
    ({"match": "*", "symmetric": False}, "asymmetric"),
    ({"activation_bits": 8}, "selects nothing"),
])
def test_bad_rules_are_refused_with_the_fix(rule, message):
    with pytest.raises(RuleError, match=message):
        build_plan([], [], "onednn", [rule])


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="choose one of onednn, shared, tensorrt"):
        build_plan([], [], "npu")
