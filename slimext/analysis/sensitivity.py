"""Which quantizers hurt: quantize one unit at a time (or keep one in float) and rank them.

A *unit* is what a rule can address: one conv/linear layer (its input and weight quantizers
together) or one join quantizer (a shared group counts once). With every scale calibrated
first, each unit is measured

    alone:       only this unit quantized, everything else float
    float_alone: everything quantized except this unit

on a metric where higher is better (output SQNR in dB, mAP, ...). The ranking puts the most
sensitive unit first: the lowest score in `alone`, the highest in `float_alone`.

    setup = prepare_measurement(model, plan, batches, mode="alone")   # calibrates
    ranking = rank_units(model, setup.units, setup.quantizers, setup.sqnr, mode="alone")

`run(model, batch)` gives the raw outputs of one batch (see slimext.analysis.raw_outputs).
"""
import math
import time
from dataclasses import dataclass, field
from typing import List

import numpy as np
import paddle

from slimext.quant.quantizers import bypassed
from slimext.compat.quantizer_internals import (is_moving_average,
                                                start_moving_average_at_next_batch)

MODES = ("alone", "float_alone")


@dataclass
class QuantUnit:
    """One thing a rule can keep at higher precision.

    name: the layer path ('neck.conv.conv') or the plan's quantizer name ('neck:add#0/in1')
    site: what a rule's `match` addresses: the layer path or the join site ('neck:add#0')
    """
    name: str
    kind: str                      # "layer" or "join"
    site: str
    quantizers: List[str] = field(default_factory=list)


def quant_units(model, plan):
    """The plan's units in plan order: quantized conv/linear layers, then join quantizers."""
    from slimext.quant.quantizers import layer_quantizers

    wrapped = layer_quantizers(model)
    units = []
    for setting in plan.layers:
        names = [n for n in ("{}/input".format(setting.path), "{}/weight".format(setting.path))
                 if n in wrapped]
        if not setting.skipped and names:
            units.append(QuantUnit(setting.path, "layer", setting.path, names))
    for spec in plan.quantizers.values():
        units.append(QuantUnit(spec.name, "join", spec.name.rsplit("/", 1)[0], [spec.name]))
    return units


def _distinct(layers):
    """Each layer object once (bypassing one twice would fail to restore it)."""
    seen, out = set(), []
    for layer in layers:
        if id(layer) not in seen:
            seen.add(id(layer))
            out.append(layer)
    return out


def _restart_moving_average(quantizer):
    # Paddle starts state and accum at 1, which pulls a scale towards 1.0 for the first
    # several batches; restarted, the first batch gives its exact abs-max.
    if is_moving_average(quantizer):
        start_moving_average_at_next_batch(quantizer)


def _observe_only(layer):
    """The quantizer updates its scale but hands its input on unchanged."""
    quantize = type(layer).forward

    def forward(x, *args, **kwargs):
        quantize(layer, x, *args, **kwargs)
        return x

    return forward


def calibrate(model, quantizers, batches, run, float_upstream=False):
    """Set the activation scales from `batches`: quantizers observe, everything else is eval.

    The model stays in eval mode (BatchNorm uses its running statistics) while each
    fake-quant layer runs in training mode, so its moving-average scale follows the data.
    float_upstream=True lets every quantizer observe the float model's activations (the
    scales each unit gets when it is quantized alone); otherwise each one sees the
    activations of the fully quantized model, as in QAT. `run(model, batch)` runs one batch.
    """
    layers = _distinct(quantizers.values())
    model.eval()
    for layer in layers:
        _restart_moving_average(layer)
        layer.train()
        if float_upstream:
            layer.forward = _observe_only(layer)
    try:
        with paddle.no_grad():
            for batch in batches:
                run(model, batch)
    finally:
        for layer in layers:
            layer.__dict__.pop("forward", None)
        model.eval()


def _noise_to_signal(reference, outputs):
    """Mean over output tensors of noise power / signal power (each tensor on its own scale)."""
    noise = np.zeros(len(reference[0]))
    signal = np.zeros(len(reference[0]))
    for ref_batch, out_batch in zip(reference, outputs):
        for i, (ref, out) in enumerate(zip(ref_batch, out_batch)):
            ref = ref.astype(np.float64)
            signal[i] += np.square(ref).sum()
            noise[i] += np.square(out.astype(np.float64) - ref).sum()
    ratios = []
    for s, n in zip(signal, noise):
        if s > 0:
            ratios.append(n / s)
        elif n > 0:
            ratios.append(math.inf)
    return float(np.mean(ratios)) if ratios else 0.0


def sqnr_db(reference, outputs):
    """SQNR in dB of `outputs` against `reference`, both [batch][tensor] lists of arrays.

    Every output tensor counts equally whatever its magnitude (a detector's boxes are in
    pixels, its scores in 0..1): the noise-to-signal ratios are averaged, then taken in dB.
    """
    ratio = _noise_to_signal(reference, outputs)
    if ratio == 0:
        return math.inf
    if math.isinf(ratio) or math.isnan(ratio):
        return -math.inf
    return -10.0 * math.log10(ratio)


class OutputSQNR:
    """Metric: SQNR (dB) of the model's raw outputs against the float model's, on `batches`."""
    name = "sqnr"
    label = "SQNR (dB)"

    def __init__(self, reference, batches, run):
        self.reference = reference
        self.batches = batches
        self.run = run

    @classmethod
    def against_float(cls, model, quantizers, batches, run):
        """Record the float reference: the same batches with every quantizer bypassed."""
        model.eval()
        with bypassed(_distinct(quantizers.values())), paddle.no_grad():
            reference = [run(model, batch) for batch in batches]
        return cls(reference, batches, run)

    def __call__(self, model):
        model.eval()
        with paddle.no_grad():
            outputs = [self.run(model, batch) for batch in self.batches]
        return sqnr_db(self.reference, outputs)


@dataclass
class Measurement:
    """A calibrated model's units, its quantizers by name and the SQNR metric against float."""
    units: List[QuantUnit]
    quantizers: dict
    sqnr: OutputSQNR


def prepare_measurement(model, plan, batches, mode="alone", run=None):
    """Calibrate the quantizers for `mode` on `batches` and record the float reference.

    For `alone` every quantizer calibrates on float activations (what it sees when it is the
    only one quantized); for `float_alone` on the fully quantized model's.
    """
    from slimext.analysis.raw_outputs import raw_output_runner
    from slimext.quant.quantizers import all_quantizers

    check_mode(mode)
    run = run or raw_output_runner(model)
    quantizers = all_quantizers(model, plan)
    calibrate(model, quantizers, batches, run, float_upstream=(mode == "alone"))
    sqnr = OutputSQNR.against_float(model, quantizers, batches, run)
    return Measurement(quant_units(model, plan), quantizers, sqnr)


@dataclass
class UnitScore:
    unit: QuantUnit
    value: float


@dataclass
class SensitivityRanking:
    """Scores of the units under one metric and mode, most sensitive first."""
    metric: str
    label: str
    mode: str
    float_value: float
    quant_value: float
    scores: List[UnitScore]
    seconds: float = 0.0

    def delta_vs_float(self, score):
        return _finite_or_none(score.value - self.float_value)

    def delta_vs_quant(self, score):
        return _finite_or_none(score.value - self.quant_value)

    def top(self, count):
        return [s.unit for s in self.scores[:count]]


def _finite_or_none(value):
    return value if isinstance(value, float) and math.isfinite(value) else None


def _sensitivity_order(mode):
    """Sort key: most sensitive first; a NaN score (broken output) counts as most sensitive."""
    def key(score):
        value = score.value
        if math.isnan(value):
            return -math.inf
        return value if mode == "alone" else -value

    return key


class Progress:
    """Logs `[i/n]` with elapsed time and ETA every `every` units (ppdet log format)."""

    def __init__(self, total, what, logger=None, every=10):
        self.total, self.what, self.every = total, what, max(1, every)
        self.logger = logger or _default_logger()
        self.start = time.time()

    def step(self, done):
        if done % self.every and done != self.total:
            return
        elapsed = time.time() - self.start
        eta = elapsed / done * (self.total - done) if done else 0.0
        self.logger.info("{} [{}/{}] elapsed {}, eta {}".format(
            self.what, done, self.total, _clock(elapsed), _clock(eta)))


def _clock(seconds):
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return "{}:{:02d}:{:02d}".format(hours, minutes, seconds)


def _default_logger():
    from ppdet.utils.logger import setup_logger

    return setup_logger("slimext.sensitivity")


def check_mode(mode):
    if mode not in MODES:
        raise ValueError("sensitivity mode must be one of {}, got {!r}".format(
            "/".join(MODES), mode))


def rank_units(model, units, quantizers, metric, mode="alone", logger=None, log_every=10):
    """Score every unit with `metric(model) -> float` (higher is better) and rank them.

    The quantizers must be calibrated already (see `calibrate`); the model runs in eval mode.
    """
    check_mode(mode)
    unknown = sorted({n for u in units for n in u.quantizers} - set(quantizers))
    if unknown:
        raise KeyError("units name quantizers the model does not have: {}".format(
            ", ".join(unknown[:5])))
    start = time.time()
    every_layer = _distinct(quantizers.values())
    model.eval()
    with bypassed(every_layer):
        float_value = metric(model)
    quant_value = metric(model)
    progress = Progress(len(units), "sensitivity {} ({})".format(metric.name, mode), logger,
                        log_every)
    scores = []
    for done, unit in enumerate(units, 1):
        own = _distinct(quantizers[n] for n in unit.quantizers)
        own_ids = {id(layer) for layer in own}
        off = own if mode == "float_alone" else [q for q in every_layer if id(q) not in own_ids]
        with bypassed(off):
            scores.append(UnitScore(unit, float(metric(model))))
        progress.step(done)
    scores.sort(key=_sensitivity_order(mode))
    return SensitivityRanking(metric.name, getattr(metric, "label", metric.name), mode,
                              float(float_value), float(quant_value), scores,
                              time.time() - start)


def screen_then_rank(model, units, quantizers, screen_metric, metric, mode="alone",
                     candidates=None, logger=None, log_every=10):
    """Rank all units with the cheap `screen_metric`, then the top `candidates` with `metric`.

    Returns (ranking, screening). For an expensive metric (mAP: one val-set pass per unit)
    this spends it only where the cheap one points. candidates=None measures every unit.
    """
    screening = rank_units(model, units, quantizers, screen_metric, mode, logger, log_every)
    chosen = screening.top(candidates if candidates is not None else len(units))
    ranking = rank_units(model, chosen, quantizers, metric, mode, logger, log_every)
    return ranking, screening
