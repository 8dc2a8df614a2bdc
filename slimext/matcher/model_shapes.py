"""Tensor names and shapes of the model a config builds, without side effects.

ppdet's LCPAN and CSPPAN append to a list default argument (`spatial_scales`) when
`num_features: 4`, so every build after the first in a process gets an extra neck level
and other names. Building here uses fresh copies of literal defaults and puts the old
ones back, so the shapes are those of a fresh process and later builds are unaffected.
"""
import ast
import contextlib
import copy
import inspect
import textwrap

_LITERAL_DEFAULTS = {}


def model_shapes(model):
    """{key: shape} of a built paddle Layer (plain or QAT-wrapped)."""
    return {k: tuple(int(d) for d in v.shape) for k, v in model.state_dict().items()}


def build_model(cfg, initialize=False):
    """The config's architecture as a fresh process builds it.

    By default parameters stay uninitialized (shapes only: no initializer runs and no
    random state is used); `initialize=True` gives a model whose weights can be saved.
    """
    import paddle
    from ppdet.core.workspace import create

    with fresh_default_arguments():
        if initialize:
            return create(cfg.architecture)
        with paddle.LazyGuard():
            return create(cfg.architecture)


def config_model_shapes(cfg):
    return model_shapes(build_model(cfg))


@contextlib.contextmanager
def fresh_default_arguments():
    """Give registered ppdet classes fresh list/dict defaults for the duration."""
    saved = {}
    for cls in _registered_classes():
        init = cls.__init__
        defaults = getattr(init, "__defaults__", None)
        if not defaults or not any(isinstance(d, (list, dict)) for d in defaults):
            continue
        fresh = _literal_defaults(cls)
        if fresh is None or len(fresh) != len(defaults):
            continue
        saved[init] = defaults
        init.__defaults__ = tuple(copy.deepcopy(f) if f is not _NOT_LITERAL else d
                                  for f, d in zip(fresh, defaults))
    try:
        yield
    finally:
        for init, defaults in saved.items():
            init.__defaults__ = defaults


_NOT_LITERAL = object()


def _registered_classes():
    from ppdet.core.workspace import global_config
    from ppdet.core.config.schema import SchemaDict

    for value in list(global_config.values()):
        if isinstance(value, SchemaDict) and getattr(value, "pymodule", None) is not None:
            cls = getattr(value.pymodule, value.name, None)
            if inspect.isclass(cls):
                yield cls


def _literal_defaults(cls):
    """The defaults as written in the source (not as mutated since), or None."""
    if cls not in _LITERAL_DEFAULTS:
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(cls.__init__)))
            args = tree.body[0].args
            _LITERAL_DEFAULTS[cls] = tuple(_literal(node) for node in args.defaults)
        except (OSError, TypeError, SyntaxError, IndexError, AttributeError):
            _LITERAL_DEFAULTS[cls] = None
    return _LITERAL_DEFAULTS[cls]


def _literal(node):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return _NOT_LITERAL


@contextlib.contextmanager
def isolated_ppdet_config():
    """Undo, on exit, what `ppdet.core.workspace.load_config` merged into ppdet's
    process-wide config, so reading several configs in one process stays independent."""
    from ppdet.core.workspace import global_config

    saved = {}
    for key, value in global_config.items():
        if isinstance(value, dict):
            saved[key] = (value, {k: copy.deepcopy(v) for k, v in value.items()})
        else:
            saved[key] = (value, None)
    try:
        yield
    finally:
        for key in [k for k in global_config if k not in saved]:
            del global_config[key]
        for key, (value, items) in saved.items():
            global_config[key] = value
            if items is not None:
                value.clear()
                value.update(items)


def build_model_from_file(config_path, initialize=False):
    """Read a config file and build its model without leaving the config loaded."""
    from ppdet.core.workspace import load_config

    with isolated_ppdet_config():
        return build_model(load_config(config_path), initialize)
