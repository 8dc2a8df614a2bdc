"""ppdet Trainer progress on the console (see slimext.progress): epochs with loss and ETA,
evaluation passes, PTQ calibration batches."""
import time

from ppdet.engine.callbacks import Callback

from slimext.compat.ppdet_internals import local_rank
from slimext.progress import StepProgress, clock, open_console


class TrainerProgress(Callback):
    """A ppdet callback: one bar (or line) per training epoch and per evaluation pass."""

    def __init__(self, trainer, console):
        super().__init__(trainer)
        self.console = console
        self.passes = {}          # mode -> StepProgress of the running pass
        self.train_start = None
        self.steps_done = 0

    def _steps_total(self, status):
        cfg = self.model.cfg
        return status.get("steps_per_epoch", 0) * (cfg.epoch - self.model.start_epoch)

    def _eta(self, status):
        elapsed = time.time() - self.train_start
        remaining = self._steps_total(status) - self.steps_done
        return clock(elapsed / max(self.steps_done, 1) * max(remaining, 0))

    def _loss(self, status):
        stats = status.get("training_staus")
        meters = getattr(stats, "meters", None) or {}
        return "{:.3f}".format(meters["loss"].median) if "loss" in meters else "-"

    def on_step_end(self, status):
        mode = status.get("mode")
        if mode == "train":
            if self.train_start is None:
                self.train_start = time.time()
            self.steps_done += 1
            if mode not in self.passes:
                desc = "epoch {}/{}".format(status["epoch_id"] + 1, self.model.cfg.epoch)
                self.passes[mode] = StepProgress(self.console, desc,
                                                 status.get("steps_per_epoch", 0))
            self.passes[mode].update(status["step_id"] + 1, loss=self._loss(status),
                                     eta=self._eta(status))
        elif mode == "eval":
            if mode not in self.passes:
                self.passes[mode] = StepProgress(self.console, "eval",
                                                 loader_length(self.model, "_eval_loader"))
            self.passes[mode].update(status["step_id"] + 1)

    def on_epoch_end(self, status):
        bar = self.passes.pop(status.get("mode"), None)
        if bar is not None:
            bar.close()


def loader_length(trainer, loader_attr):
    # Inside training, evaluation runs on trainer._eval_loader; alone, on trainer.loader.
    loader = getattr(trainer, loader_attr, None) or getattr(trainer, "loader", None)
    try:
        return len(loader)
    except TypeError:
        return None


def install_trainer_progress(trainer, quiet=False):
    """Register the progress callback on a ppdet Trainer; rank 0 only, nothing when quiet
    or without a terminal. Returns the Console."""
    console = open_console(quiet)
    if console.enabled and local_rank(trainer) == 0:
        trainer.register_callbacks([TrainerProgress(trainer, console)])
    return console


class CalibrationProgress:
    """Counts the model's forward calls (one per calibration batch) as a bar; a context."""

    def __init__(self, model, console, total):
        self.model, self.total = model, total
        self.bar = StepProgress(console, "calibration", total)
        self.done, self.hook = 0, None

    def _seen(self, layer, inputs, outputs):
        self.done += 1
        self.bar.update(min(self.done, self.total))

    def __enter__(self):
        if self.bar.console.enabled:
            self.hook = self.model.register_forward_post_hook(self._seen)
        return self

    def __exit__(self, *exc):
        if self.hook is not None:
            self.hook.remove()
            self.bar.close()
        return False
