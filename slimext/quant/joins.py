"""Find the joins of a model: ops that merge two or more activations (add, subtract,
multiply or gate, concat, stack, matmul).

One forward pass on example inputs with the interception active records every add /
subtract / concat / stack, where it ran (layer path, ordinal) and what produced each operand.
An op is a join only when at least two operands are activations: tensors that depend on
the model input (stop_gradient False, not parameters). Constant or bias adds, shape
arithmetic and scalars are recorded as non-joins and never quantized.
"""
import traceback
from dataclasses import dataclass, field
from typing import List

import paddle

from slimext.quant.interception import FrameStack, handling

# Layers whose output is the input of a quantized op: what makes a join worth quantizing.
_QUANTIZABLE_CONSUMERS = ("Conv2D", "Linear", "QuantizedConv2D", "QuantizedLinear")


@dataclass
class Operand:
    """One input of a join: what produced it and when (trace order; older = skip path)."""
    producer: str
    order: int
    is_activation: bool
    ndim: int


@dataclass
class JoinPoint:
    """A place where activations merge, named `layer.path:kind#ordinal`."""
    site: str
    kind: str
    layer_path: str
    layer_type: str
    operands: List[Operand]
    output_order: int
    consumers: List[str] = field(default_factory=list)
    calls: int = 1
    followed_by_quantizable: bool = True

    @property
    def activation_inputs(self):
        return [i for i, op in enumerate(self.operands) if op.is_activation]


    def skip_input(self):
        """Index of the residual/identity operand: the activation produced earliest."""
        inputs = self.activation_inputs
        return min(inputs, key=lambda i: self.operands[i].order) if inputs else None

    def signature(self):
        return (self.kind, tuple(op.ndim for op in self.operands))


_PRODUCT_KINDS = ("gate", "multiply")
_OPERATOR_OF_KIND = {"add": "+", "subtract": "-", "multiply": "*", "gate": "*"}


@dataclass
class UnquantizableJoin:
    """A join of activations written in a form interception sees but cannot quantize."""
    site: str
    kind: str
    form: str
    location: str

    def describe(self):
        return "{} ({}, at {}): in-place ops cannot take quantizers; write it as x = x {} y" \
            .format(self.site, self.form, self.location, _OPERATOR_OF_KIND[self.kind])


def _caller_location():
    """file:line of the model code that ran the op (the innermost frame outside Paddle
    and slimext.quant)."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        path = frame.filename.replace("\\", "/")
        if "/paddle/" in path or "/slimext/quant/" in path or "contextlib" in path:
            continue
        return "{}:{}".format(frame.filename, frame.lineno)
    return "unknown"


def _is_tensor(value):
    return isinstance(value, (paddle.Tensor, paddle.static.Variable))


def _is_activation(value):
    if not isinstance(value, paddle.Tensor):
        return False
    if isinstance(value, paddle.base.framework.EagerParamBase):
        return False
    return not value.stop_gradient


def flatten_values(value):
    """The leaves of nested lists, tuples and dicts (a forward's inputs or outputs)."""
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from flatten_values(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from flatten_values(item)
    elif value is not None:
        yield value


def _flatten(value):
    return (leaf for leaf in flatten_values(value) if _is_tensor(leaf))


class JoinTracer:
    """Interception handler that records joins during one traced forward."""

    def __init__(self, model):
        self.model = model
        self.stack = FrameStack(model, self)
        self.joins = {}
        self.non_joins = []
        self.unquantizable = []   # UnquantizableJoin: joins in a form that cannot take quantizers
        self._producers = {}   # id(tensor) -> (producer, order)
        self._alive = []       # keep traced tensors alive so their ids stay unique
        self._order = 0
        self._last_quantizable_call = 0
        self._join_outputs = {}          # site -> its output tensors (one per call)
        self._quantizable_inputs = []    # what conv/linear layers took, for data flow
        self._hooks = []
        for path, layer in model.named_sublayers():
            self._hooks.append(layer.register_forward_pre_hook(self._consumer_hook(path, layer)))
            self._hooks.append(layer.register_forward_post_hook(self._producer_hook(path, layer)))

    def _record(self, tensor, producer):
        self._order += 1
        self._producers[id(tensor)] = (producer, self._order)
        self._alive.append(tensor)

    def _consumer_hook(self, path, layer):
        quantizable = type(layer).__name__ in _QUANTIZABLE_CONSUMERS

        def hook(_layer, inputs):
            if quantizable:
                self._order += 1
                self._last_quantizable_call = self._order
                self._quantizable_inputs.extend(
                    t for t in _flatten(inputs) if _is_tensor(t) and not t.stop_gradient)
            for tensor in _flatten(inputs):
                if id(tensor) not in self._producers:
                    self._record(tensor, "op before {}".format(path))
                producer = self._producers[id(tensor)][0]
                if producer in self.joins and path not in self.joins[producer].consumers:
                    self.joins[producer].consumers.append(path)
            return None

        return hook

    def _producer_hook(self, path, layer):
        def hook(_layer, inputs, outputs):
            for tensor in _flatten(outputs):
                if id(tensor) not in self._producers:
                    self._record(tensor, path)
            return None

        return hook

    def on_join(self, kind, operands, compute):
        frame = self.stack.top()
        site = frame.next_site(kind)
        result = compute(operands)
        described = [self._describe(op, frame.path) for op in operands]
        if sum(op.is_activation for op in described) < 2:
            self.non_joins.append(site)
            # `gate * 0.5`, `y + bias`: what a layer then takes still comes from the join.
            origin = next((op.producer for op in described if op.producer in self.joins), None)
            if origin is not None:
                self._record(result, origin)
            return result
        self._record(result, site)
        self._join_outputs.setdefault(site, []).append(result)
        if site in self.joins:
            self.joins[site].calls += 1
        else:
            layer_type = type(frame.layer).__name__ if frame.layer is not None else ""
            self.joins[site] = JoinPoint(site, kind, frame.path, layer_type, described,
                                         self._producers[id(result)][1])
        return result

    def on_scalar_op(self, operands, result):
        """`gate * 0.5`: what a layer then takes still comes from the join."""
        for op in operands:
            if _is_tensor(op) and self._producers.get(id(op), (None,))[0] in self.joins:
                self._record(result, self._producers[id(op)][0])
                return

    def on_unquantizable_join(self, kind, form, operands):
        described = [self._describe(op, self.stack.top().path) for op in operands]
        if sum(op.is_activation for op in described) < 2:
            return
        site = self.stack.top().next_site(form)
        self.unquantizable.append(UnquantizableJoin(site, kind, form, _caller_location()))

    def _describe(self, value, frame_path):
        if not _is_tensor(value):
            return Operand("constant", 0, False, 0)
        producer, order = self._producers.get(id(value), (None, 0))
        if producer is None:
            producer = "op in {}".format(frame_path or "<model>")
            self._record(value, producer)
            order = self._order
        return Operand(producer, order, _is_activation(value), len(value.shape))

    def mark_inputs(self, inputs):
        for tensor in _flatten(inputs):
            self._record(tensor, "<input>")

    def finish(self):
        """Joins after the last conv/linear (post-processing, loss) are not worth quantizing;
        nor is a product whose output no layer takes (directly, or through a scalar or
        constant op): a multi-level head scores level 0 (sigmoid(cls) * iou) before level
        1's convs run, so only data flow tells."""
        for join in self.joins.values():
            join.followed_by_quantizable = self._last_quantizable_call > join.output_order
            if join.kind in _PRODUCT_KINDS and not join.consumers:
                join.followed_by_quantizable = False
        for site in self._joins_no_layer_reads():
            self.joins[site].followed_by_quantizable = False
        return list(self.joins.values())

    def _joins_no_layer_reads(self):
        """Joins that come before a conv/linear call but that no conv/linear input depends
        on, by the autograd graph of the discovery forward: GFL decodes each level's boxes
        (concat of corners) before the next level's convs run, so call order alone would
        quantize box coordinates that only NMS reads."""
        candidates = [site for site, join in self.joins.items()
                      if join.followed_by_quantizable and site in self._join_outputs
                      and all(not t.stop_gradient for t in self._join_outputs[site])]
        if not candidates or not self._quantizable_inputs:
            return []
        outputs = [t for site in candidates for t in self._join_outputs[site]]
        total = paddle.add_n([t.astype("float32").sum() for t in self._quantizable_inputs])
        grads = paddle.grad([total], outputs, allow_unused=True)
        unread, at = [], 0
        for site in candidates:
            count = len(self._join_outputs[site])
            if all(g is None for g in grads[at:at + count]):
                unread.append(site)
            at += count
        return unread

    def close(self):
        for handle in self._hooks:
            handle.remove()
        self.stack.remove()
        self._alive = []
        self._join_outputs, self._quantizable_inputs = {}, []


def _as_activation_inputs(example_inputs):
    """Copies of the floating-point example inputs that require grad (mark activations)."""
    def convert(value):
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(convert(v) for v in value)
        if isinstance(value, paddle.Tensor) and value.dtype in (paddle.float32, paddle.float64):
            value = value.detach().clone()
            value.stop_gradient = False
        return value

    return convert(example_inputs)


@dataclass
class JoinDiscovery:
    """What one traced forward found: the joins (execution order), the ops that are not
    joins, and the joins written in a form that cannot take quantizers."""
    joins: List[JoinPoint]
    non_joins: List[str]
    unquantizable: List[UnquantizableJoin]


def trace_joins(model, example_inputs):
    """Run `model(*example_inputs)` once with interception active; a JoinDiscovery.

    The model's train/eval state is used as is: discover on the path you deploy.
    """
    inputs = _as_activation_inputs(list(example_inputs))
    tracer = JoinTracer(model)
    tracer.mark_inputs(inputs)
    try:
        with handling(tracer):
            model(*inputs)
        return JoinDiscovery(tracer.finish(), list(tracer.non_joins), list(tracer.unquantizable))
    finally:
        tracer.close()


def discover_joins(model, example_inputs):
    """The JoinPoints of `model` in execution order (see trace_joins)."""
    return trace_joins(model, example_inputs).joins
