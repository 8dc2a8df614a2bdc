"""Pretrained-weight / architecture matcher: one report and a verdict before training.

    report = check_weights(model_or_shapes, "model.pdparams", WeightCheckPolicy())
    print(report.format_text()); report.verdict  # 'ok' | 'warn' | 'error'

Commands load weights with `load_checked_weights(model, path, policy)`, or wrap ppdet's
own loading in `checked_ppdet_weight_loading(policy)`.
"""
from slimext.matcher.check import check_weights
from slimext.matcher.checkpoint_file import CheckpointError, read_checkpoint
from slimext.matcher.loading import (WeightCheckFailed, checked_ppdet_weight_loading,
                                     load_checked_weights, quiet_ppdet_checkpoint_log)
from slimext.matcher.match import KeyMatch, match_keys
from slimext.matcher.model_shapes import build_model, config_model_shapes, model_shapes
from slimext.matcher.policy import (ERROR, OK, WARN, WeightCheckConfigError,
                                    WeightCheckPolicy)
from slimext.matcher.report import WeightMatchReport

__all__ = ["check_weights", "CheckpointError", "read_checkpoint", "WeightCheckFailed",
           "checked_ppdet_weight_loading", "load_checked_weights",
           "quiet_ppdet_checkpoint_log", "KeyMatch", "match_keys", "build_model",
           "config_model_shapes", "model_shapes", "ERROR", "OK", "WARN",
           "WeightCheckConfigError", "WeightCheckPolicy", "WeightMatchReport"]
