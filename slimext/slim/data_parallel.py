"""Data-parallel QAT under ppdet's Trainer: rank-consistent observer scales.

`ScaleSync` in the training config (top level, optional; defaults shown):

    ScaleSync:
      enable: true        # average observer state over ranks (only when world size > 1)
      every_n_steps: 1    # after every n-th optimizer step

Works for any quantized model ppdet trains (`slim: ResidualQAT` or PaddleSlim's `slim: QAT`):
the observers are found by type, see slimext.quant.scale_sync.
"""
import contextlib

from ppdet.engine.callbacks import Callback
from ppdet.utils.logger import setup_logger

from slimext.distributed import is_main_rank, world_size
from slimext.quant.scale_sync import ScaleSync

logger = setup_logger(__name__)

SETTING_KEY = "ScaleSync"
DEFAULTS = {"enable": True, "every_n_steps": 1}


class ScaleSyncConfigError(ValueError):
    """The `ScaleSync` setting is wrong; the message names the key."""


class RanksDisagree(RuntimeError):
    """Ranks start training with different observer values (different checkpoints?)."""


def scale_sync_settings(cfg):
    raw = cfg.get(SETTING_KEY) or {}
    if not isinstance(raw, dict):
        raise ScaleSyncConfigError("{} must be a mapping such as {{enable: true, every_n_steps: "
                                   "1}}, got {!r}".format(SETTING_KEY, raw))
    unknown = sorted(str(k) for k in raw if k not in DEFAULTS)
    if unknown:
        raise ScaleSyncConfigError("{}: unknown key(s) {}; valid keys are {}".format(
            SETTING_KEY, ", ".join(unknown), ", ".join(DEFAULTS)))
    settings = dict(DEFAULTS, **raw)
    if not isinstance(settings["enable"], bool):
        raise ScaleSyncConfigError("{}.enable must be true or false, got {!r}".format(
            SETTING_KEY, settings["enable"]))
    steps = settings["every_n_steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ScaleSyncConfigError("{}.every_n_steps must be an integer >= 1, got {!r}".format(
            SETTING_KEY, steps))
    return settings


class ScaleSyncCallback(Callback):
    """Runs `ScaleSync` after each optimizer step (ppdet calls on_step_end after it)."""

    def __init__(self, model, sync):
        super().__init__(model)
        self.sync = sync

    def on_step_end(self, status):
        # The epoch's last step always syncs: rank 0 saves the checkpoint right after it.
        last = status.get("step_id", -1) + 1 == status.get("steps_per_epoch")
        self.sync.step_end(force=last)

    def on_train_end(self, status):
        if is_main_rank():
            logger.info("scale sync: {} all-reduces over {} steps".format(self.sync.syncs,
                                                                          self.sync.steps))


def install_scale_sync(trainer, cfg):
    """Add scale sync to a train-mode ppdet Trainer; None in one process or when disabled.

    Before any step it checks that every rank holds the same observer values (after
    `-r` resume each rank has loaded the checkpoint itself) and stops every rank if not.
    """
    settings = scale_sync_settings(cfg)
    if world_size() < 2 or not settings["enable"]:
        return None
    sync = ScaleSync(trainer.model, settings["every_n_steps"])
    if not len(sync):
        return None
    differing = sync.mismatched()
    if differing:
        raise RanksDisagree(
            "the ranks start with different quantizer state ({} of {} values, e.g. {}): every "
            "rank must load the same weights/checkpoint".format(
                len(differing), len(sync), ", ".join(differing[:3])))
    if is_main_rank():
        logger.info("scale sync: {} observer values averaged over {} ranks every {} step(s), "
                    "identical on all ranks before training".format(
                        len(sync), world_size(), sync.every_n_steps))
    callback = ScaleSyncCallback(trainer.model, sync)
    trainer.register_callbacks([callback])
    return callback


@contextlib.contextmanager
def scale_sync_on_every_trainer():
    """For a PaddleDetection tool script: every ppdet Trainer that starts training in the
    block gets `install_scale_sync` first, with the config as merged by then."""
    from ppdet.core.workspace import global_config

    from slimext.compat.ppdet_hooks import trainer_train_preceded_by

    with trainer_train_preceded_by(lambda trainer: install_scale_sync(trainer, global_config)):
        yield
