"""Where slimext hooks into ppdet's own flow (PaddleDetection's tool scripts run unchanged):
each hook replaces one ppdet function for the duration of a block, or once per process, and
is the only place that assigns to a ppdet attribute.

- `pretrain_loader_replaced`: ppdet's `load_pretrain_weight`, as imported by ppdet.slim and
  the Trainer (the weight check, slimext.matcher.loading);
- `trainer_train_preceded_by`: `Trainer.train` runs a step first (rank-consistent scales,
  slimext.slim.data_parallel);
- `checkpoint_writer_wrapped`: ppdet's checkpoint writer (atomic checkpoints,
  slimext.checkpoints);
- `slim_model_builder_replaced`: ppdet's `build_slim_model` as the tools import it (the
  user's -o over the slim YAML, the plan printed once: slimext.slim.build).
"""
import contextlib
import functools
import importlib

# ppdet modules that call `load_pretrain_weight` by the name they imported.
PRETRAIN_LOADER_USERS = ("ppdet.slim", "ppdet.engine.trainer")


@contextlib.contextmanager
def pretrain_loader_replaced(make_loader):
    """Inside the block ppdet loads pretrained weights with `make_loader(ppdet's loader)`."""
    modules = [importlib.import_module(name) for name in PRETRAIN_LOADER_USERS]
    saved = [module.load_pretrain_weight for module in modules]
    replacement = make_loader(saved[0])
    for module in modules:
        module.load_pretrain_weight = replacement
    try:
        yield
    finally:
        for module, original in zip(modules, saved):
            module.load_pretrain_weight = original


@contextlib.contextmanager
def trainer_train_preceded_by(before):
    """Inside the block, every ppdet Trainer in train mode calls `before(trainer)` when its
    `train()` starts."""
    from ppdet.engine import Trainer

    original = Trainer.train

    @functools.wraps(original)
    def train(self, *args, **kwargs):
        if self.mode == "train":
            before(self)
        return original(self, *args, **kwargs)

    Trainer.train = train
    try:
        yield
    finally:
        Trainer.train = original


def checkpoint_writer_wrapped(wrap):
    """Route ppdet's checkpoint writer through `wrap(writer)` for the rest of the process
    (idempotent: the wrapper keeps ppdet's writer as `__wrapped__`)."""
    from ppdet.engine import callbacks

    if not hasattr(callbacks.save_model, "__wrapped__"):
        callbacks.save_model = wrap(callbacks.save_model)


@contextlib.contextmanager
def slim_model_builder_replaced(make_builder):
    """Inside the block `ppdet.slim.build_slim_model`, the name PaddleDetection's tools
    import, is `make_builder(ppdet's builder)` (a script imported inside the block keeps it)."""
    import ppdet.slim

    original = ppdet.slim.build_slim_model
    ppdet.slim.build_slim_model = make_builder(original)
    try:
        yield
    finally:
        ppdet.slim.build_slim_model = original
