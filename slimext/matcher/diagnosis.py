"""What a set of weights most likely is, read from its own tensor names and shapes.

The same reading applies to a checkpoint and to the model a config builds, so the two
can be compared field by field. Input size is not stored in weights and is never guessed.
"""
import re
from dataclasses import asdict, dataclass, fields

from slimext.matcher.keys import canonical

# Distinctive backbone tensor names of ppdet's backbone families, most specific first.
BACKBONE_FINGERPRINTS = (
    ("ESNet", re.compile(r"_conv_dw_mv1\.")),
    ("ShuffleNetV2", re.compile(r"_conv_linear_2\.")),
    ("LCNet", re.compile(r"^blocks6\.\d+\.pw_conv\.")),
    ("MobileNetV3", re.compile(r"\.bottleneck_conv\.")),
    ("MobileNetV1", re.compile(r"\._depthwise_conv\.")),
    ("GhostNet", re.compile(r"\.cheap_operation\.")),
    ("CSPResNet", re.compile(r"stages\.\d+\.conv_down\.")),
    ("CSPDarkNet", re.compile(r"^dark\d\.")),
    ("ResNet", re.compile(r"branch2a\.")),
)
LCNET_SCALES = (0.25, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5)
# LCNet's stem and last-stage widths at scale 1.0.
_LCNET_STEM, _LCNET_LAST = 16, 512


@dataclass
class ArchSignature:
    """Architecture facts recoverable from weights; None when the weights do not say."""
    backbone: str = None
    backbone_scale: float = None
    backbone_out_channels: int = None
    neck_channels: int = None
    head_channels: int = None
    head_num_convs: int = None
    num_classes: int = None
    reg_max: int = None
    imagenet_classes: int = None  # set for a backbone-only classification checkpoint

    ARCH_FIELDS = ("backbone", "backbone_scale", "neck_channels", "head_channels",
                   "head_num_convs", "reg_max")

    def as_dict(self):
        return {k: v for k, v in asdict(self).items() if v is not None}

    def backbone_text(self):
        if self.backbone is None:
            return "unknown backbone"
        if self.backbone_scale is not None:
            return "{} x{:g}".format(self.backbone, self.backbone_scale)
        if self.backbone_out_channels:
            return "{} ({} output channels)".format(self.backbone, self.backbone_out_channels)
        return self.backbone

    def describe(self):
        if self.imagenet_classes is not None:
            return "{} backbone-only classification weights ({} classes)".format(
                self.backbone_text(), self.imagenet_classes)
        parts = [self.backbone_text()]
        if self.neck_channels:
            parts.append("neck {} ch".format(self.neck_channels))
        if self.head_channels:
            convs = ", {} convs".format(self.head_num_convs) if self.head_num_convs else ""
            parts.append("head {} ch{}".format(self.head_channels, convs))
        if self.num_classes:
            parts.append("{} classes".format(self.num_classes))
        if self.reg_max is not None:
            parts.append("reg_max {}".format(self.reg_max))
        return ", ".join(parts)


def make_divisible(value, divisor=8):
    """Channel rounding LCNet and other mobile backbones use."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def read_signature(shapes):
    """ArchSignature of a {key: shape} map (checkpoint or model)."""
    shapes = {canonical(k): v for k, v in shapes.items()}
    has_detector_parts = any(k.startswith(("neck.", "head.")) for k in shapes)
    if any(k.startswith("backbone.") for k in shapes) or has_detector_parts:
        backbone = {k[len("backbone."):]: v for k, v in shapes.items()
                    if k.startswith("backbone.")}
    else:
        backbone = shapes  # a backbone saved on its own (e.g. ImageNet pretraining)
    sig = ArchSignature()
    for family, pattern in BACKBONE_FINGERPRINTS:
        if any(pattern.search(k) for k in backbone):
            sig.backbone = family
            break
    if sig.backbone == "LCNet":
        sig.backbone_scale, sig.backbone_out_channels = _lcnet_scale(backbone)
    if not has_detector_parts and "fc.weight" in backbone:
        sig.imagenet_classes = backbone["fc.weight"][-1]
    _read_neck_and_head(shapes, sig)
    return sig


def _lcnet_scale(backbone):
    stem = backbone.get("conv1.conv.weight")
    last = [v for k, v in backbone.items()
            if re.match(r"blocks6\.\d+\.pw_conv\.conv\.weight$", k)]
    if not stem or not last:
        return None, None
    width = max(v[0] for v in last)
    for scale in LCNET_SCALES:
        if (make_divisible(_LCNET_STEM * scale) == stem[0]
                and make_divisible(_LCNET_LAST * scale) == width):
            return scale, width
    return None, width


def _read_neck_and_head(shapes, sig):
    neck_in = shapes.get("neck.conv_t.convs.0.conv.weight")
    if neck_in:
        sig.neck_channels = neck_in[0]
    # PicoFeat names its convs cls_conv_dw<level>.<conv index>
    convs = {int(m.group(1)) for k in shapes
             for m in [re.match(r"head\.conv_feat\.cls_conv_dw0\.(\d+)\.", k)] if m}
    if convs:
        sig.head_num_convs = max(convs) + 1
    head_pw = shapes.get("head.conv_feat.cls_conv_pw0.0.conv.weight")
    if head_pw:
        sig.head_channels = head_pw[0]
    project = shapes.get("head.distribution_project.project")
    reg = shapes.get("head.head_reg_list.0.weight")
    if project:
        sig.reg_max = project[0] - 1
    elif reg:
        sig.reg_max = reg[0] // 4 - 1
    cls = shapes.get("head.head_cls_list.0.weight")
    if cls:
        box_outputs = 0 if reg or sig.reg_max is None else 4 * (sig.reg_max + 1)
        sig.num_classes = cls[0] - box_outputs  # PicoHead v1 shares cls and box outputs


FIELD_LABELS = {
    "backbone": "backbone family",
    "backbone_scale": "backbone width (scale)",
    "neck_channels": "neck channels",
    "head_channels": "head channels",
    "head_num_convs": "head convs per level",
    "num_classes": "number of classes",
    "reg_max": "reg_max",
}


def signature_differences(config_sig, ckpt_sig):
    """[(label, config value, checkpoint value)] for fields both sides state."""
    out = []
    for name in ArchSignature.ARCH_FIELDS + ("num_classes",):
        a, b = getattr(config_sig, name), getattr(ckpt_sig, name)
        if a is not None and b is not None and a != b:
            out.append((FIELD_LABELS[name], a, b))
    return out


def same_architecture(a, b):
    """True when every architecture field both signatures state agrees (classes aside)."""
    return not any(getattr(a, n) is not None and getattr(b, n) is not None
                   and getattr(a, n) != getattr(b, n) for n in ArchSignature.ARCH_FIELDS)


def signature_field_names():
    return [f.name for f in fields(ArchSignature)]
