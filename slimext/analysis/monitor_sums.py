"""The numbers of the join error monitor: per-step error sums, reduced over ranks, as samples.

For each quantizer call of a sampled step the float input x and the fake-quant output q
add sum(x^2) and sum((x-q)^2); SQNR is a ratio of these sums, so sums from several calls
(a shared quantizer) and from several ranks' batches combine exactly.
"""
import math
from dataclasses import dataclass

import paddle

from slimext.distributed import sum_across_ranks, world_size
from slimext.quant import interception

# Exact quantization (zero error) has infinite SQNR; reports use this finite ceiling.
MAX_SQNR_DB = 150.0


def error_db(signal, noise):
    """(SQNR in dB, relative MSE) from sum(x^2) and sum((x-q)^2); NaN when undefined."""
    if not (math.isfinite(signal) and math.isfinite(noise)):
        return math.nan, math.nan  # inf/NaN activations: the step diverged
    if noise <= 0.0:
        return MAX_SQNR_DB, 0.0
    if signal <= 0.0:
        return math.nan, math.nan
    rel_mse = noise / signal
    return min(MAX_SQNR_DB, -10.0 * math.log10(rel_mse)), rel_mse


@dataclass
class ErrorSample:
    step: int
    quantizer: str
    sqnr_db: float
    rel_mse: float


class StepErrorSums:
    """sum(x^2) and sum((x-q)^2) per quantizer over one sampled step (paddle tensors until
    the step ends: one device-to-host copy per step)."""

    def __init__(self):
        self._sums = {}

    def clear(self):
        self._sums = {}

    def add(self, name, x, q):
        with paddle.no_grad(), interception.suspended():
            if x.dtype != paddle.float32:
                x, q = x.astype("float32"), q.astype("float32")
            signal = paddle.sum(paddle.square(x))
            noise = paddle.sum(paddle.square(x - q))
            sums = self._sums.get(name)
            if sums is None:
                self._sums[name] = [signal, noise]
            else:  # a shared quantizer is called at several places in one step
                sums[0] = sums[0] + signal
                sums[1] = sums[1] + noise

    def samples(self, step, known_names):
        """The step's ErrorSamples (over every rank's batch in data parallel) and a reset.

        known_names: every quantizer any rank may report, so that all ranks send vectors
        of the same layout."""
        if world_size() > 1:
            names, values = self._reduced_over_ranks(sorted(known_names))
        elif not self._sums:
            return []
        else:
            names = list(self._sums)
            values = paddle.stack([s.reshape([]) for n in names for s in self._sums[n]]).numpy()
        self._sums = {}
        return [ErrorSample(step, name, *error_db(float(values[2 * i]), float(values[2 * i + 1])))
                for i, name in enumerate(names)]

    def _reduced_over_ranks(self, names):
        """(names, [signal, noise, ...]) summed over all ranks. Every rank samples the same
        steps and sends one vector over all known quantizers (zeros and a 0 count where one
        did not run)."""
        zero = paddle.zeros([], dtype="float32")
        rows = []
        for name in names:
            sums = self._sums.get(name)
            rows.extend([sums[0].reshape([]), sums[1].reshape([]), paddle.ones([])]
                        if sums else [zero, zero, zero])
        totals = sum_across_ranks(paddle.stack(rows)).numpy().reshape([-1, 3])
        seen = [i for i, row in enumerate(totals) if row[2] > 0]
        return [names[i] for i in seen], totals[seen, :2].reshape([-1])
