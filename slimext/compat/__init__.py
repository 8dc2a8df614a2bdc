"""Every change slimext makes to Paddle's, PaddleSlim's or ppdet's behaviour, in one place.

Each fix is named after what it fixes, says which versions need it, and is applied only
there (`apply_fixes`, called by `slimext.register_with_ppdet()`, never by an import);
`applied_fixes()` lists what was applied in this environment.
Tracing into the old IR for an export is not a fix of this kind: it is switched on only
inside `slimext.compat.tracing.export_tracing()`.
"""
from dataclasses import dataclass
from typing import Callable

from slimext.compat.versions import installed_version, paddle_at_least


@dataclass(frozen=True)
class Fix:
    name: str
    fixes: str                      # the failure it prevents, as a user would see it
    versions: str                   # where it is needed, in words
    needed: Callable[[], bool]
    apply: Callable[[], object]


def _ppdet_260():
    return installed_version("ppdet") == (2, 6, 0)


def _paddle3():
    return paddle_at_least(3, 0, 0)


def _fix_lcpan_defaults():
    from ppdet.modeling.necks.lc_pan import LCPAN

    from slimext.compat.lcpan_defaults import copy_mutable_defaults

    copy_mutable_defaults(LCPAN, "spatial_scales")


def _fix_ppdet_export_tracing():
    from slimext.compat.ppdet_export import trace_ppdet_exports_in_export_scope

    return trace_ppdet_exports_in_export_scope()


def _fix_assigner_index_dtype():
    from slimext.compat.assigners import cast_batch_index_in_assigners

    return cast_batch_index_in_assigners()


FIXES = (
    Fix("lcpan_spatial_scales_default",
        "the second PicoDet built in one process fails in LCPAN.forward "
        "(its spatial_scales default list grows)", "ppdet 2.6.0", _ppdet_260,
        _fix_lcpan_defaults),
    Fix("ppdet_export_tracing",
        "ppdet's Trainer.export writes a PIR model.json that no INT8 pipeline runs (Paddle 3), "
        "or fails reading main_program under SOT fallback (Paddle 2.6)", "every version",
        lambda: True, _fix_ppdet_export_tracing),
    Fix("assigner_batch_index_dtype",
        "PicoDet training fails in ATSSAssigner / TaskAlignedAssigner: int64 + int32",
        "Paddle >= 3.0 with ppdet 2.6.0", lambda: _paddle3() and _ppdet_260(),
        _fix_assigner_index_dtype),
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
