"""The ONNX graph under construction: nodes, initializers, fresh names, shape look-ups.

Converters keep Paddle's variable names for the tensors an op produces, so the ONNX graph
reads like the program it came from (and tests can find a quantizer by its scale's name).
"""
import numpy as np


class UnsupportedOpError(ValueError):
    """The program holds an op (or an op setting) the converter cannot express in ONNX."""


class GraphBuilder:
    def __init__(self, program, opset):
        from onnx import helper

        self.helper = helper
        self.program = program
        self.opset = opset
        self.nodes = []
        self.initializers = {}     # name -> TensorProto
        self._used = set(program.shapes) | set(program.params)
        self._counter = 0
        self._produced = set()
        # Paddle may write one variable twice (two ops, one output name); ONNX wants each
        # name written once, so a rewrite gets a fresh name that later reads use.
        self._latest = {}

    # names -------------------------------------------------------------------------------
    def fresh(self, hint):
        while True:
            self._counter += 1
            name = "{}@onnx{}".format(hint, self._counter)
            if name not in self._used:
                self._used.add(name)
                return name

    # tensors -----------------------------------------------------------------------------
    def initializer(self, name, array):
        """Store `array` once under `name` (a second call with the same name reuses it)."""
        from onnx import numpy_helper

        if name not in self.initializers:
            self.initializers[name] = numpy_helper.from_array(np.asarray(array), name)
            self._used.add(name)
        return name

    def constant(self, array, hint="const", dtype=None):
        array = np.asarray(array, dtype=dtype)
        return self.initializer(self.fresh(hint), array)

    def int64s(self, values, hint="shape"):
        return self.constant(np.asarray(values, dtype=np.int64), hint)

    def value(self, name):
        """A variable the op reads (its latest version): parameters become float
        initializers on first use."""
        if name in self._latest:
            return self._latest[name]
        if name in self.program.params and name not in self.initializers:
            self.initializer(name, self.program.params[name])
        return name

    def _written(self, name):
        """The ONNX name a newly written Paddle variable gets."""
        if name in self._produced or name in self.initializers:
            fresh = self.fresh(name)
            self._latest[name] = fresh
            name = fresh
        self._produced.add(name)
        return name

    def param(self, name):
        """A parameter's value, or None when `name` is computed at run time."""
        return self.program.params.get(name)

    def shape(self, name):
        return self.program.shapes.get(name)

    def rank(self, name):
        shape = self.shape(name)
        if shape is None:
            array = self.param(name)
            return None if array is None else array.ndim
        return len(shape)

    # nodes -------------------------------------------------------------------------------
    def node(self, op_type, inputs, outputs=None, hint=None, **attrs):
        """Append a node; outputs: names, or None for one fresh output. Returns the outputs."""
        if outputs is None:
            outputs = [self.fresh(hint or op_type.lower())]
        else:
            outputs = [self._written(name) for name in
                       ([outputs] if isinstance(outputs, str) else outputs)]
        self.nodes.append(self.helper.make_node(op_type, list(inputs), list(outputs),
                                                name=self.fresh(op_type), **attrs))
        return outputs[0] if len(outputs) == 1 else outputs

    def unsupported(self, op, reason):
        raise UnsupportedOpError("op {!r} ({} -> {}) cannot be converted to ONNX: {}".format(
            op.type, _first(op.inputs), _first(op.outputs), reason))


def _first(slots):
    for names in slots.values():
        if names:
            return names[0]
    return "?"
