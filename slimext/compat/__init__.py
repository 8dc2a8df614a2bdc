"""Every change slimext makes to Paddle's, PaddleSlim's or ppdet's behaviour, in one place.

Each fix is named after what it fixes, says which versions need it, and is applied only
there (`apply_fixes`, called when slimext is imported). `python -m slimext.compat` lists
them with what was applied in this environment.
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


def _fix_old_ir_functions():
    from slimext.compat.legacy_static_ops import install_old_ir_fallbacks

    return install_old_ir_fallbacks()


def _fix_assigner_index_dtype():
    from slimext.compat.assigners import cast_batch_index_in_assigners

    return cast_batch_index_in_assigners()


FIXES = (
    Fix("lcpan_spatial_scales_default",
        "the second PicoDet built in one process fails in LCPAN.forward "
        "(its spatial_scales default list grows)", "ppdet 2.6.0", _ppdet_260,
        _fix_lcpan_defaults),
    Fix("old_ir_tensor_functions",
        "old-IR export (the program oneDNN INT8 runs) fails at paddle.multiply/F.sigmoid/"
        "matmul: 'must be Value, but got Variable'", "Paddle >= 3.0", _paddle3,
        _fix_old_ir_functions),
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
