"""Checkpoints that a crash cannot leave half-written."""
import glob
import os
import shutil
import tempfile


def atomic_save_model(save_model):
    """Wrap ppdet's checkpoint writer so a crash never leaves a half-written checkpoint.

    Files go to a temporary folder beside the target and are moved into place one by one
    with os.replace, which is atomic on one filesystem.
    """

    def save(model, optimizer, save_dir, save_name, last_epoch, ema_model=None):
        os.makedirs(save_dir, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".ckpt-", dir=save_dir)
        try:
            save_model(model, optimizer, staging, save_name, last_epoch, ema_model)
            for path in glob.glob(os.path.join(staging, save_name + ".*")):
                os.replace(path, os.path.join(save_dir, os.path.basename(path)))
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    save.__wrapped__ = save_model
    return save


def install_atomic_checkpoints():
    """Route ppdet's Checkpointer through `atomic_save_model` (idempotent)."""
    from slimext.compat.ppdet_hooks import checkpoint_writer_wrapped

    checkpoint_writer_wrapped(atomic_save_model)
