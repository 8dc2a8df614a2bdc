"""Read a checkpoint's tensor names and shapes, and tell a weights file from other files."""
import os
import re
from dataclasses import dataclass

# Paddle optimizers name their state after the parameter: `conv2d_3.w_0_moment1_0`, ...
_OPTIMIZER_KEY = re.compile(r"_(moment\d|velocity|beta\d_pow_acc|mean_square|mean_grad|"
                            r"squared|linear)_\d+$")


class CheckpointError(Exception):
    """The checkpoint cannot be used at all; the message says what to pass instead."""


@dataclass
class CheckpointContents:
    path: str          # '' for an in-memory state dict
    shapes: dict       # {key: tuple(shape)} of every tensor
    kind: str          # 'weights', 'ema' (.pdema) or 'optimizer' (.pdopt content)
    state: dict = None  # the tensors as numpy arrays (None for shapes-only reads)


def read_checkpoint(source):
    """Names, shapes and values of a `.pdparams` file or a state dict; raise CheckpointError."""
    if isinstance(source, dict):
        return CheckpointContents("", _shapes(source, "the state dict"), _kind("", source),
                                  source)
    path = resolve_weights_path(str(source))
    if not os.path.exists(path) and os.path.exists(path + ".pdparams"):
        path += ".pdparams"
    if not os.path.isfile(path):
        raise CheckpointError("checkpoint {!r} does not exist: pass the path of a .pdparams "
                              "file (with or without the extension)".format(str(source)))
    state = _load(path)
    return CheckpointContents(path, _shapes(state, path), _kind(path, state), state)


def resolve_weights_path(weights):
    """A local path for a weights setting; a URL must already sit in ppdet's cache."""
    from ppdet.utils.checkpoint import is_url
    from ppdet.utils.download import WEIGHTS_HOME, map_path, parse_url

    if not is_url(weights):
        return weights
    local = map_path(parse_url(weights), WEIGHTS_HOME)
    if os.path.isfile(local):
        return local
    raise CheckpointError("{} is a download URL and cannot be fetched here (no network): "
                          "put the file at {} or pass a local .pdparams path"
                          .format(weights, local))


def _load(path):
    import paddle

    try:
        state = paddle.load(path, return_numpy=True)
    except Exception as error:  # paddle raises pickle/EOF/unicode errors alike
        size = os.path.getsize(path)
        raise CheckpointError(
            "{!r} ({} bytes) is not a readable Paddle checkpoint ({}: {}); it may be "
            "truncated or another kind of file: re-copy it or pass the .pdparams that "
            "training wrote".format(path, size, type(error).__name__, str(error)[:120]))
    if not isinstance(state, dict):
        raise CheckpointError("{!r} holds a {}, not a state dict of tensors: pass a .pdparams "
                              "written by paddle.save(model.state_dict())"
                              .format(path, type(state).__name__))
    return state


def _shapes(state, where):
    shapes = {}
    for key, value in state.items():
        shape = getattr(value, "shape", None)
        if shape is not None:
            shapes[str(key)] = tuple(int(d) for d in shape)
    if not shapes:
        raise CheckpointError("{} holds no tensors (keys: {}): pass a .pdparams file of model "
                              "weights".format(where, sorted(map(str, state))[:5]))
    return shapes


def _kind(path, state):
    if path.endswith(".pdopt") or "LR_Scheduler" in state or "last_epoch" in state:
        return "optimizer"
    tensors = [k for k, v in state.items() if hasattr(v, "shape")]
    if tensors and sum(bool(_OPTIMIZER_KEY.search(k)) for k in tensors) > len(tensors) / 2:
        return "optimizer"
    if path.endswith(".pdema"):
        return "ema"
    return "weights"
