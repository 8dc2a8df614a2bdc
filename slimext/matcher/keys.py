"""What a state-dict key says about itself: its canonical name, module, block, and role."""
import re

# PaddleSlim's QAT wraps each quantized layer and moves its tensors one level down
# (`conv.weight` -> `conv._layer.weight`); the canonical name drops that level so float
# and QAT names of the same tensor compare equal.
WRAPPER_SEGMENT = "._layer"

# Sub-layers that hold quantizer state: PaddleSlim dygraph QAT/PTQ and paddle.quantization.
_QUANTIZER = re.compile(r"(^|\.)(_fake_quant_\w*|_act_preprocess|_ma_output_scale|"
                        r"\w*quanter\w*|_observer\w*)\.")
_PACT_ALPHA = re.compile(r"(^|\.)_act_preprocess\.alpha$")
# Classification outputs of detection heads (PicoHead/PicoHeadV2/GFL/FCOS/...); PicoHead
# registers each one twice, as `head_cls_list.<i>` and as `head_cls<i>`.
_CLASS_LAYER = re.compile(r"(^|\.)(head_cls_list|head_cls\d+|gfl_head_cls|cls_score|cls_logits|"
                          r"fcos_head_cls|pred_cls|cls_pred)(\.|$)")


def canonical(key):
    """The key with QAT wrapper levels removed."""
    return key.replace(WRAPPER_SEGMENT, "") if WRAPPER_SEGMENT in key else key


def is_quantizer_state(key):
    """True for quantizer scales, PACT clip values and observer buffers."""
    return _QUANTIZER.search(key) is not None


def is_pact_alpha(key):
    return _PACT_ALPHA.search(key) is not None


def is_class_layer(key):
    """True for a head layer whose first dimension is the number of classes."""
    return _CLASS_LAYER.search(canonical(key)) is not None


def module_of(key):
    """`backbone`, `neck`, `head`, ... (the first name level)."""
    return key.split(".", 1)[0]


def block_of(key):
    """The first two name levels, e.g. `backbone.blocks5` or `head.head_cls_list`."""
    parts = canonical(key).split(".", 2)
    return ".".join(parts[:2])


def dotted_suffixes(key):
    """`a.b.c`, `b.c`, `c`: every name ppdet's suffix rule could match, longest first."""
    yield key
    start = key.find(".")
    while start != -1:
        yield key[start + 1:]
        start = key.find(".", start + 1)
