"""The weight check as a step of a command: policy from the config, failures as UserError."""
import contextlib

from slimext.commands.common import UserError


@contextlib.contextmanager
def checked_pretrain_loading(cfg, target):
    """ppdet loads pretrained weights through the check inside this block.

    A failed check (or an unreadable file) ends the command with exit status 2 after the
    report has been logged; `WeightCheck` in the config sets the policy.
    """
    from slimext.matcher import (CheckpointError, WeightCheckConfigError, WeightCheckFailed,
                                 WeightCheckPolicy, checked_ppdet_weight_loading)

    try:
        policy = WeightCheckPolicy.from_config(cfg)
    except WeightCheckConfigError as error:
        raise UserError(str(error))
    if not policy.enable:
        yield
        return
    try:
        with checked_ppdet_weight_loading(policy, target=target):
            yield
    except WeightCheckFailed as failure:
        raise UserError(str(failure))
    except CheckpointError as error:
        raise UserError("pretrain_weights: {}".format(error))
