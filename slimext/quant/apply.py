"""Put a plan's join quantizers into a model: one fake-quant layer per QuantizerSpec.

The quantizer layers live in `model.slimext_join_quantizers` (so checkpoints, `-r` resume
and `to_static` export carry their scales); a `JoinQuantizerHandler` calls them at the
planned sites whenever the model runs. Shared groups are one layer object used at several
places: one scale by construction, not by copying numbers.
"""
import re
from contextlib import contextmanager

import paddle
from paddle.nn.quant.quant_layers import FakeQuantMovingAverageAbsMax

from slimext.quant import interception
from slimext.quant.coverage import value_key
from slimext.quant.interception import FrameStack
from slimext.compat.program_editing import layer_helper
from slimext.compat.quantizer_internals import moving_average_state, moving_rate, quant_bits

QUANTIZERS_ATTR = "slimext_join_quantizers"


def quantizer_key(name):
    """A state-dict friendly key for a quantizer name like 'neck:add#0/in1'."""
    return re.sub(r"[^0-9a-zA-Z_]", "_", name)


class JoinSignatureError(RuntimeError):
    """The model ran a different op at a planned site than it did during discovery."""


class QuantizerObserver:
    """What an observer of the join quantizers implements (e.g. an error monitor).

    `observe` gets every call of a join quantizer: its name in the plan, the float input
    and the fake-quant output. It runs inside the forward; interception is suspended for
    it, so its own arithmetic is never taken for a join.
    """

    def observe(self, name, x, q):
        raise NotImplementedError


class JoinQuantizerHandler:
    """Calls the plan's quantizers at the planned join sites while its model runs.

    Active only inside a call of its model (or inside `forced()`): see
    slimext.quant.interception for why that is exception-safe and per context.
    """

    def __init__(self, model, plan, quantizers):
        self.plan = plan
        self.quantizers = quantizers
        self.sites = {p.site: p for p in plan.active_joins()}
        self.observers = []
        self.seen_outputs = None  # names of traced join outputs, while `recording_outputs`
        self._model = model
        self.stack = FrameStack(model, self)
        interception.bind_root(model, self)

    def add_observer(self, observer):
        if observer not in self.observers:
            self.observers.append(observer)

    def remove_observer(self, observer):
        if observer in self.observers:
            self.observers.remove(observer)

    @contextmanager
    def forced(self):
        """Active without the model's own call (to_static traces `forward` directly)."""
        with interception.handling(self):
            yield self

    @contextmanager
    def recording_outputs(self):
        """Collect the names of the join outputs traced inside the block (static mode):
        the coverage check tells them from joins interception never saw."""
        self.seen_outputs = set()
        try:
            yield self.seen_outputs
        finally:
            self.seen_outputs = None

    def on_join(self, kind, operands, compute):
        site = self.stack.top().next_site(kind)
        placement = self.sites.get(site)
        if placement is None:
            return self._record(compute(operands))
        signature = (kind, tuple(len(op.shape) if hasattr(op, "shape") else 0 for op in operands))
        if signature != placement.signature:
            raise JoinSignatureError(
                "join {} ran as {} but was planned as {}: the model takes a different path "
                "than during discovery; pass example_inputs that follow the training path "
                "or skip this join with a rule {{match: '{}', skip: true}}".format(
                    site, signature, placement.signature, site))
        quantized = list(operands)
        for index, name in placement.inputs.items():
            quantized[index] = self._quantize(name, operands[index])
        result = self._record(compute(quantized))
        if placement.output is not None:
            result = self._quantize(placement.output, result)
        return result

    def on_unquantizable_join(self, kind, form, operands):
        """In-place joins stay as written; discovery has reported them."""
        if self.seen_outputs is not None and operands:
            self.seen_outputs.add(value_key(operands[0]))

    def _record(self, result):
        if self.seen_outputs is not None:
            self.seen_outputs.add(value_key(result))
        return result

    def _quantize(self, name, tensor):
        out = self.quantizers[quantizer_key(name)](tensor)
        if self.observers:
            with interception.suspended():
                for observer in self.observers:
                    observer.observe(name, tensor, out)
        return out

    def remove(self):
        interception.unbind_root(self._model, self)
        self.stack.remove()


class JoinFakeQuant(FakeQuantMovingAverageAbsMax):
    """Moving-average abs-max fake quantizer whose static output has a unique name.

    Paddle's layer names its static output after the input; a join quantizer often reads
    the same tensor as a conv's input quantizer, and two ops writing one variable break
    the program. Dygraph behaviour is the parent's.
    """

    def forward(self, input):
        if paddle.in_dynamic_mode():
            return super().forward(input)
        helper = layer_helper("join_fake_quant")
        out = helper.create_variable_for_type_inference(dtype=input.dtype)
        scale, state, accum = moving_average_state(self)
        inputs = {"X": [input], "InScale": [scale]}
        outputs = {"Out": [out], "OutScale": [scale]}
        if self.training:
            inputs.update(InState=[state], InAccum=[accum])
            outputs.update(OutState=[state], OutAccum=[accum])
        helper.append_op(type="fake_quantize_dequantize_moving_average_abs_max",
                         inputs=inputs, outputs=outputs,
                         attrs={"moving_rate": moving_rate(self),
                                "bit_length": quant_bits(self), "is_test": not self.training})
        return out


def attach_join_quantizers(model, plan, moving_rate=0.9):
    """Create the plan's quantizer layers inside `model` and start routing joins to them."""
    quantizers = paddle.nn.LayerDict()
    for spec in plan.quantizers.values():
        quantizers[quantizer_key(spec.name)] = JoinFakeQuant(
            name=quantizer_key(spec.name), moving_rate=moving_rate, quant_bits=spec.bits)
    setattr(model, QUANTIZERS_ATTR, quantizers)
    return JoinQuantizerHandler(model, plan, quantizers)
