"""Backend profiles: where each deployment runtime needs quantizers at a join.

A profile is data: one `PlacementRule` per join kind and the bit widths its INT8 passes
can execute. Plans are built from these tables; nothing else in slimext branches on the
backend's name.
"""
from dataclasses import dataclass
from typing import Tuple

INPUT_CHOICES = ("all", "skip", "none")
SHARE_CHOICES = ("none", "all")


@dataclass(frozen=True)
class PlacementRule:
    """Quantizers at one kind of join.

    inputs: "all" activation inputs, only the "skip" (residual/identity) input, or "none".
    output: whether the join's output gets a quantizer.
    share:  "all" makes every quantizer of the join one object (one scale), "none" keeps
            one quantizer per place.
    """
    inputs: str
    output: bool
    share: str


@dataclass(frozen=True)
class BackendProfile:
    name: str
    description: str
    add: PlacementRule
    concat: PlacementRule
    gate: PlacementRule
    executable_bits: Tuple[int, ...]
    # Global average pools exported as a float mean: the runtime's INT8 pool keeps one
    # scale through the pool, which the fake-quant model never simulated
    # (slimext.deploy.global_pool).
    global_pool_as_mean: bool = False
    # The runtime keeps one scale per tensor: quantizers reading one tensor (directly or
    # through split/reshape/concat...) get one scale at export (slimext.quant.tensor_scales).
    one_scale_per_tensor: bool = True

    def rule_for(self, kind):
        # A subtraction (or an n-way add) is placed like an addition: same fused kernels,
        # same scale needs; a stack is a concat along a new axis. A product of two
        # same-shaped activations stays float unless a rule says otherwise, and so does a
        # matmul of two activations (attention): its softmax operand holds weights of
        # about 1/keys each, which one symmetric 8-bit scale for [0, 1] rounds to zero.
        if kind in ("concat", "stack"):
            return self.concat
        if kind == "gate":
            return self.gate
        return FLOAT if kind in ("multiply", "matmul") else self.add


# Every input and the output on one scale: a concat that needs no requantization.
ONE_SCALE = PlacementRule(inputs="all", output=True, share="all")
# No quantizer: the runtime runs the op in float.
FLOAT = PlacementRule(inputs="none", output=False, share="none")

BACKENDS = {
    "onednn": BackendProfile(
        name="onednn",
        description="Paddle Inference on CPU with oneDNN INT8: an add fused into the conv "
                    "before it runs INT8 only when its residual input and its output have "
                    "scales; inputs may keep their own scales; concat takes one scale; an "
                    "SE gate gets scales on both inputs and the output (without them oneDNN "
                    "takes the gated map's scale from the pooled branch and clips it); "
                    "global average pools run as a float mean (its INT8 pool2d keeps "
                    "one scale through the pool).",
        add=PlacementRule(inputs="all", output=True, share="none"),
        concat=ONE_SCALE,
        gate=PlacementRule(inputs="all", output=True, share="none"),
        executable_bits=(8,),
        global_pool_as_mean=True,
    ),
    "tensorrt": BackendProfile(
        name="tensorrt",
        description="TensorRT: QDQ only on the skip input of a residual add so conv + add "
                    "fuse; concat inputs and output share one scale (no requantization).",
        add=PlacementRule(inputs="skip", output=False, share="none"),
        concat=ONE_SCALE,
        gate=FLOAT,
        executable_bits=(8,),
    ),
    "shared": BackendProfile(
        name="shared",
        description="Accelerators that cannot rescale inside a join (many NPUs): every "
                    "input and the output of a join share one scale.",
        add=ONE_SCALE,
        concat=ONE_SCALE,
        gate=FLOAT,
        executable_bits=(8,),
    ),
}


def get_backend(name):
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError("unknown backend {!r}: choose one of {}".format(
            name, ", ".join(sorted(BACKENDS))))
