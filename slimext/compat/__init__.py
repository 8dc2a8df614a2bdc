"""Every change slimext makes to Paddle's, PaddleSlim's or ppdet's behaviour, in one place.

Each fix is named after what it fixes, says which versions need it, and is applied only
there, decided from the imported code itself (does LCPAN still have a list default, does
the assigner add an uncast index, does Pillow lack textsize): a ppdet run from a
PaddleDetection checkout is not the installed distribution, and develop's says 0.0.0 (`apply_fixes`, called by `slimext.register_with_ppdet()`, never by an import);
`applied_fixes()` lists what was applied in this environment.
Tracing into the old IR for an export is not a fix of this kind: it is switched on only
inside `slimext.compat.tracing.export_tracing()`.
"""
from dataclasses import dataclass
from typing import Callable

import inspect

from slimext.compat.versions import paddle_at_least


@dataclass(frozen=True)
class Fix:
    name: str
    fixes: str                      # the failure it prevents, as a user would see it
    versions: str                   # where it is needed, in words
    needed: Callable[[], bool]
    apply: Callable[[], object]


def _paddle3():
    return paddle_at_least(3, 0, 0)


def _lcpan_default_is_shared_list():
    from ppdet.modeling.necks.lc_pan import LCPAN

    default = inspect.signature(LCPAN.__init__).parameters["spatial_scales"].default
    return isinstance(default, list)


def _csppan_default_is_shared_list():
    from ppdet.modeling.necks.csp_pan import CSPPAN

    default = inspect.signature(CSPPAN.__init__).parameters["spatial_scales"].default
    return isinstance(default, list)


def _assigners_add_uncast_batch_index():
    from slimext.compat.assigners import assigners_adding_uncast_batch_index

    return _paddle3() and bool(assigners_adding_uncast_batch_index())


def _qfl_multiplies_by_bool_mask():
    from ppdet.modeling.losses import gfocal_loss

    from slimext.compat.quality_focal_loss import multiplies_by_bool_mask

    return _paddle3() and multiplies_by_bool_mask(gfocal_loss.quality_focal_loss)


def _fix_quality_focal_loss():
    from slimext.compat.quality_focal_loss import use_float_masks_in_quality_focal_loss

    return use_float_masks_in_quality_focal_loss()


def _pillow_lacks_textsize():
    from slimext.compat.pillow_textsize import textsize_missing

    return textsize_missing()


def _visualizer_downloads_font():
    from slimext.compat.ppdet_font import visualizer_downloads_its_font

    return visualizer_downloads_its_font()


def _fix_pillow_textsize():
    from slimext.compat.pillow_textsize import restore_textsize

    return restore_textsize()


def _fix_label_font():
    from slimext.compat.ppdet_font import make_label_font_offline_safe

    return make_label_font_offline_safe()


def _fix_lcpan_defaults():
    from ppdet.modeling.necks.lc_pan import LCPAN

    from slimext.compat.lcpan_defaults import copy_mutable_defaults

    copy_mutable_defaults(LCPAN, "spatial_scales")


def _fix_csppan_defaults():
    from ppdet.modeling.necks.csp_pan import CSPPAN

    from slimext.compat.lcpan_defaults import copy_mutable_defaults

    copy_mutable_defaults(CSPPAN, "spatial_scales")


def _fix_ppdet_export_tracing():
    from slimext.compat.ppdet_export import trace_ppdet_exports_in_export_scope

    return trace_ppdet_exports_in_export_scope()


def _fix_assigner_index_dtype():
    from slimext.compat.assigners import cast_batch_index_in_assigners

    return cast_batch_index_in_assigners()


FIXES = (
    Fix("lcpan_spatial_scales_default",
        "the second PicoDet built in one process fails in LCPAN.forward "
        "(its spatial_scales default list grows)",
        "ppdet whose LCPAN has a list default (2.6.0, release/2.7.1, develop)",
        _lcpan_default_is_shared_list, _fix_lcpan_defaults),
    Fix("csppan_spatial_scales_default",
        "the second legacy PicoDet (ESNet) built in one process fails in CSPPAN.forward "
        "(its spatial_scales default list grows)",
        "ppdet whose CSPPAN has a list default (2.6.0)",
        _csppan_default_is_shared_list, _fix_csppan_defaults),
    Fix("ppdet_export_tracing",
        "ppdet's Trainer.export writes a PIR model.json that no INT8 pipeline runs (Paddle 3), "
        "or fails reading main_program under SOT fallback (Paddle 2.6)", "every version",
        lambda: True, _fix_ppdet_export_tracing),
    Fix("assigner_batch_index_dtype",
        "PicoDet training fails in ATSSAssigner / TaskAlignedAssigner: int64 + int32",
        "Paddle >= 3.0 with a ppdet whose assigners add the index uncast (2.6.0; "
        "release/2.7.1 and develop cast it)", _assigners_add_uncast_batch_index,
        _fix_assigner_index_dtype),
    Fix("quality_focal_loss_bool_mask",
        "GFL training fails in quality_focal_loss: Type promotion ... x: float32, y: bool",
        "Paddle >= 3.0 with a ppdet whose quality_focal_loss multiplies by a bool mask "
        "(2.6.0)", _qfl_multiplies_by_bool_mask, _fix_quality_focal_loss),
    Fix("pillow_textsize",
        "PaddleDetection v2.6.0 deploy/python/infer.py drawing boxes: AttributeError: "
        "'ImageDraw' object has no attribute 'textsize'",
        "Pillow >= 10 (textsize removed)", _pillow_lacks_textsize, _fix_pillow_textsize),
    Fix("ppdet_label_font_offline",
        "ppdet's tools/infer.py drawing boxes: ConnectionError fetching simfang.ttf into a "
        "folder named '~' (its ~/.cache path is never expanded)",
        "ppdet whose visualizer downloads its font (2.7+, develop)",
        _visualizer_downloads_font, _fix_label_font),
)

_APPLIED = {}


def apply_fixes():
    """Apply every fix this environment needs (idempotent); return their names."""
    for fix in FIXES:
        if fix.name not in _APPLIED and fix.needed():
            _APPLIED[fix.name] = fix.apply()
    return list(_APPLIED)


def applied_fixes():
    return list(_APPLIED)
