"""One set of activation scales across data-parallel ranks.

Under data parallel every rank runs its moving-average abs-max observers on its own shard;
gradients are all-reduced, the observers' state is not. `ScaleSync` makes it identical on
all ranks after a step with one all-reduce of one flat buffer (not one call per quantizer).

The reduction. A moving-average observer with rate m keeps
    state <- m*state + 1,   accum <- m*accum + absmax(x),   scale = accum / state.
Starting from common values (s, a), rank r's step gives s_r = m*s + 1 and
a_r = m*a + x_r. Averaging over the N ranks gives
    mean(s_r) = m*s + 1,    mean(a_r) = m*a + mean_r(x_r),
which is exactly one observer of the same rate whose observation in that step is the mean
of the ranks' batch abs-max values. Each x_r estimates the same quantity a single-device
run estimates (the abs-max of one per-device batch), so the synced scale does not depend on
the number of devices and has N times the samples per step. (A max over ranks would
estimate the abs-max of an N-times larger batch: scales would grow with the device count.)
The scale is recomputed as accum / state from the averaged values, as the kernel does.
PACT's alpha (a trainable parameter, already kept equal by the gradient all-reduce) is
averaged in the same buffer so it stays equal bit for bit.

Paddle's own `FakeQuantMovingAverageAbsMax(reduce_type="max")` all-reduces the scale alone,
per quantizer, before every forward; it leaves state and accumulator per rank.
"""
import paddle
import paddle.distributed as dist

from slimext.compat.quantizer_internals import QuantizerInternalsChanged, moving_average_state
from slimext.distributed import sum_across_ranks, world_size

# The observers keep their state in private attributes, read through slimext.compat.
# Checked on Paddle 2.6.2 / PaddleSlim 2.6.0 and Paddle 3.3.1.
PACT_ATTR = "alpha"
ObserverLayoutError = QuantizerInternalsChanged


def _observer_classes():
    from paddle.nn.quant.quant_layers import FakeQuantMovingAverageAbsMax, MovingAverageAbsMaxScale

    return (FakeQuantMovingAverageAbsMax, MovingAverageAbsMaxScale)


def _pact_classes():
    try:
        from paddleslim.dygraph.quant.qat import PACT
    except ImportError:
        return ()
    return (PACT,)




def observer_tensors(model):
    """[(name, tensor)] of every observer state to keep equal across ranks, in model order.

    Names are `<layer path>.state|accum|scale|alpha`; moving-average observers give state,
    accumulator and scale, PACT layers their alpha.
    """
    observers, pacts = _observer_classes(), _pact_classes()
    found = []
    for path, layer in model.named_sublayers():
        if isinstance(layer, observers):
            scale, state, accum = moving_average_state(layer)
            found.extend((("{}.state".format(path), state), ("{}.accum".format(path), accum),
                          ("{}.scale".format(path), scale)))
        elif pacts and isinstance(layer, pacts):
            found.append(("{}.{}".format(path, PACT_ATTR), getattr(layer, PACT_ATTR)))
    return found


class ScaleSync:
    """Average the observers' state over ranks: `sync()` after each optimizer step.

    every_n_steps: sync on every n-th `step_end()` (1 = every step). Between syncs the
    ranks drift apart; the averaged result then equals one observer whose per-step input
    is the ranks' mean only when n = 1.
    """

    def __init__(self, model, every_n_steps=1):
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) \
                or every_n_steps < 1:
            raise ValueError("ScaleSync every_n_steps must be an integer >= 1, got {!r}"
                             .format(every_n_steps))
        self.every_n_steps = every_n_steps
        entries = observer_tensors(model)
        self.names = [name for name, _ in entries]
        self.tensors = [tensor for _, tensor in entries]
        # Offsets of each observer's (state, accum, scale) in the flat buffer: the scales
        # are recomputed from the averaged pairs in one vectorised division.
        offsets, offset = {}, 0
        for name, tensor in zip(self.names, self.tensors):
            offsets[name] = offset
            offset += int(tensor.size)
        states = [offsets[n] for n in self.names if n.endswith(".state")]
        self._state_at = paddle.to_tensor(states, dtype="int64")
        self._accum_at = paddle.to_tensor([i + 1 for i in states], dtype="int64")
        self._scale_at = paddle.to_tensor([i + 2 for i in states], dtype="int64")
        self._sizes = [int(t.size) for t in self.tensors]
        self.steps = 0
        self.syncs = 0

    def __len__(self):
        return len(self.tensors)

    def flat(self):
        """All observer values as one float32 vector (a copy), in `names` order."""
        if not self.tensors:
            return paddle.zeros([0], dtype="float32")
        # Observer tensors are float32 of shape [1]: no per-tensor op beyond the concat.
        return paddle.concat([t if t.ndim == 1 and t.dtype == paddle.float32
                              else t.reshape([-1]).astype("float32") for t in self.tensors])

    def step_end(self, force=False):
        """Call after every optimizer step; syncs on the interval, or now if `force`.

        Force it before anything reads the scales (the last step before a checkpoint).
        """
        self.steps += 1
        if force or self.steps % self.every_n_steps == 0:
            self.sync()

    @paddle.no_grad()
    def sync(self):
        """Replace every rank's observer values by their mean over ranks (one all-reduce)."""
        if world_size() < 2 or not self.tensors:
            return
        mean = sum_across_ranks(self.flat()) / float(world_size())
        if self._state_at.shape[0]:
            scales = paddle.gather(mean, self._accum_at) / paddle.gather(mean, self._state_at)
            mean = paddle.scatter(mean, self._scale_at, scales)
        for tensor, part in zip(self.tensors, paddle.split(mean, self._sizes)):
            if part.shape != tensor.shape or part.dtype != tensor.dtype:
                part = part.reshape(tensor.shape).astype(tensor.dtype)
            paddle.assign(part, output=tensor)
        self.syncs += 1

    @paddle.no_grad()
    def mismatched(self):
        """Names whose value differs between ranks (one all-reduce of max and -min)."""
        if world_size() < 2 or not self.tensors:
            return []
        values = self.flat()
        both = paddle.concat([values, -values])
        dist.all_reduce(both, op=dist.ReduceOp.MAX)
        n = int(values.shape[0])
        spread = (both[:n] + both[n:]).numpy()  # max - min over ranks
        names, offset = [], 0
        for name, tensor in zip(self.names, self.tensors):
            size = int(tensor.size)
            if (spread[offset:offset + size] != 0).any():
                names.append(name)
            offset += size
        return names
