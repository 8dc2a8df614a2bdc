"""Editing an old-IR program (`paddle.static.Program`) in place: the export's QDQ conversion
and the conv-bias rewrite. Paddle offers these edits only as private Block/Operator methods;
each goes through one function here that fails naming the Paddle version if it moved."""
from slimext.compat.versions import version_text


class ProgramEditingChanged(RuntimeError):
    """A private program-editing method slimext relies on is gone from this Paddle."""


def _method(owner, name):
    method = getattr(owner, name, None)
    if method is None:
        raise ProgramEditingChanged(
            "{} has no {} (slimext edits exported programs with it); Paddle {} is not a "
            "supported version (see stacks/) or slimext.compat.program_editing needs "
            "updating".format(type(owner).__name__, name, version_text("paddle")))
    return method


def rename_input(op, old_name, new_name):
    """`op` reads `new_name` where it read `old_name`."""
    _method(op, "_rename_input")(old_name, new_name)


def remove_op(block, index):
    """Remove the op at `index` (its desc is freed: read nothing of it afterwards)."""
    _method(block, "_remove_op")(index)


def insert_op(block, index, **op):
    """Insert an op (type=..., inputs=..., outputs=..., attrs=...) at `index`."""
    return _method(block, "_insert_op")(index, **op)


def sync_with_cpp(program):
    """Make the Python view of `program` match its edited C++ desc."""
    _method(program, "_sync_with_cpp")()


def layer_helper(name):
    """Paddle's LayerHelper, which appends old-IR ops to the current program."""
    from paddle.base.layer_helper import LayerHelper

    return LayerHelper(name)
