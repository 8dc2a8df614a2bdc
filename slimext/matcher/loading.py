"""Load weights through the check, with one summary instead of ppdet's per-key log lines.

`load_checked_weights(model, weights)` is the loader for any command. Inside
`checked_ppdet_weight_loading(...)`, ppdet's own `load_pretrain_weight` (called by
`build_slim_model` before the QAT wrapping and by `Trainer.load_weights`) runs through it.
"""
import contextlib
import functools
import logging

import numpy as np

from slimext.matcher.check import check_weights
from slimext.matcher.checkpoint_file import read_checkpoint
from slimext.matcher.policy import ERROR, OK, WeightCheckPolicy

logger = logging.getLogger("slimext.weight_check")
PPDET_CHECKPOINT_LOGGER = "ppdet.utils.checkpoint"
# Modules that bound `load_pretrain_weight` by name when ppdet imported them.
class WeightCheckFailed(Exception):
    """The verdict was `error`; `.report` holds the full WeightMatchReport."""

    def __init__(self, report):
        self.report = report
        super().__init__("weights {} do not fit {}: {}{}".format(
            report.checkpoint or "(state dict)", report.target, "; ".join(report.reasons),
            "".join(". " + a for a in report.advice[:2])))


def load_checked_weights(model, weights, policy=None, target="model", verbose=False,
                         log=None):
    """Check `weights` against `model`, then load what matched; return the report.

    Raises WeightCheckFailed (verdict error; nothing loaded) or CheckpointError. Logs the
    full report on warn/error, one summary line always; `policy.detail_file` gets every key.
    """
    log = log or _ppdet_style_logger()
    policy = policy or WeightCheckPolicy()
    contents = read_checkpoint(weights)
    report = check_weights(model, weights, policy, target=target, contents=contents)
    if policy.detail_file:
        report.write_details(policy.detail_file)
    if report.verdict != OK or verbose:
        log.info("\n" + report.format_text(verbose=verbose))
    if report.verdict == ERROR:
        raise WeightCheckFailed(report)
    model.set_dict(_loadable_state(model, contents.state, report.loaded_pairs))
    log.info(report.summary_line())
    return report


def _loadable_state(model, state, pairs):
    own = model.state_dict()
    out = {}
    for model_key, ckpt_key in pairs:
        value = np.asarray(state[ckpt_key])
        dtype = str(own[model_key].dtype).replace("paddle.", "")
        out[model_key] = value.astype(dtype) if dtype in np.sctypeDict and \
            value.dtype != np.dtype(dtype) else value
    return out


@contextlib.contextmanager
def quiet_ppdet_checkpoint_log():
    """Silence ppdet's per-key INFO lines (`... is unmatched`, `... not used`)."""
    ppdet_logger = logging.getLogger(PPDET_CHECKPOINT_LOGGER)
    level = ppdet_logger.level
    ppdet_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        ppdet_logger.setLevel(level)


@contextlib.contextmanager
def checked_ppdet_weight_loading(policy=None, target="model", verbose=False, checks=None):
    """Route ppdet's `load_pretrain_weight` through `load_checked_weights` for the block.

    `policy` may be a function returning the policy at load time, for a script that reads
    its config inside the block; `checks(path)` (default: every load) picks the loads to
    check, the others go to ppdet's own loader.
    """
    from slimext.compat.ppdet_hooks import pretrain_loader_replaced

    def checked_loader(ppdet_loader):
        return functools.partial(_load_pretrain_weight, ppdet_loader, policy, target, verbose,
                                 checks)

    with pretrain_loader_replaced(checked_loader), quiet_ppdet_checkpoint_log():
        yield


def _load_pretrain_weight(ppdet_loader, policy, target, verbose, checks, model,
                          pretrain_weight, *more, **options):
    # ppdet >= 2.7 passes ARSL_eval (semi-supervised teacher/student keys): its own
    # loader handles that layout.
    if any(more) or any(options.values()):
        return ppdet_loader(model, pretrain_weight, *more, **options)
    if not pretrain_weight:  # ppdet's slim path calls this even without weights
        _ppdet_style_logger().info("no pretrain_weights: the model starts from its "
                                   "initializer")
        return
    current = policy() if callable(policy) else policy
    if (checks is not None and not checks(pretrain_weight)) or \
            (current is not None and not current.enable):
        return ppdet_loader(model, pretrain_weight)
    load_checked_weights(model, pretrain_weight, current, target=target, verbose=verbose)


def _ppdet_style_logger():
    """Log with ppdet's format so the summary reads like the rest of the training log."""
    if not logger.handlers:
        from ppdet.utils.logger import setup_logger

        return setup_logger("slimext.weight_check")
    return logger


def checked_ppdet_pretrain_loading(target="model"):
    """For a PaddleDetection tool script: check the loads of the config's `pretrain_weights`
    with the `WeightCheck` policy of the config as merged when the load happens (so `-o
    WeightCheck.on_mismatch=warn` counts); evaluation/export `weights` load as in ppdet."""
    from ppdet.core.workspace import global_config

    def is_pretrain(path):
        pretrain = global_config.get("pretrain_weights")
        return bool(pretrain) and _same_weights(path, pretrain)

    return checked_ppdet_weight_loading(lambda: WeightCheckPolicy.from_config(global_config),
                                        target=target, checks=is_pretrain)


def _same_weights(a, b):
    import os

    strip = lambda p: os.path.abspath(p[:-len(".pdparams")] if p.endswith(".pdparams") else p)
    return strip(str(a)) == strip(str(b))
