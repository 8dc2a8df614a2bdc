"""Checkpoints that a crash cannot leave half-written."""
import glob
import os

from slimext.fileio import move_into_place, staging_dir


def atomic_save_model(save_model):
    """Wrap ppdet's checkpoint writer so a crash never leaves a half-written checkpoint.

    Files go to a temporary folder beside the target and are moved into place one by one
    with os.replace, which is atomic on one filesystem.
    """

    def save(model, optimizer, save_dir, save_name, last_epoch, ema_model=None):
        with staging_dir(save_dir, prefix=".ckpt-") as staging:
            save_model(model, optimizer, staging, save_name, last_epoch, ema_model)
            written = [os.path.basename(p)
                       for p in glob.glob(os.path.join(staging, save_name + ".*"))]
            move_into_place(staging, written, save_dir)

    save.__wrapped__ = save_model
    return save


def install_atomic_checkpoints():
    """Route ppdet's Checkpointer through `atomic_save_model` (idempotent)."""
    from slimext.compat.ppdet_hooks import checkpoint_writer_wrapped

    checkpoint_writer_wrapped(atomic_save_model)
