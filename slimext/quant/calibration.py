"""Calibrators: the activations one quantizer saw during calibration -> its threshold.

A threshold is the abs-max scale a FakeQuantMovingAverageAbsMax layer keeps in `_scale`
(values beyond it are clipped, the range inside is split into 2^(bits-1)-1 steps).

    calibrator = make_calibrator("KL", bits=8)
    for x in activations: calibrator.observe(x)
    calibrator.threshold()

abs_max, hist and KL are Paddle's own dygraph PTQ quantizers; avg (mean of the per-batch
abs max, as Paddle's static PTQ computes it) and mse (least quantization error over the
same histogram Paddle's hist/KL collect) are written here on the same interface.
"""
import math

import numpy as np
from paddle.quantization.imperative.ptq_quantizer import (AbsmaxQuantizer, BaseHistQuantizer,
                                                          BaseQuantizer, HistQuantizer,
                                                          KLQuantizer, abs_max_value)

# A scale of zero divides by zero in the fake-quant op; an all-zero tensor gets this one.
MIN_THRESHOLD = 1e-8


class CalibrationError(ValueError):
    """Calibration cannot give a usable threshold; the message says what to change."""


class AverageAbsmaxQuantizer(BaseQuantizer):
    """Mean over batches of each batch's abs max: one outlier batch moves it only 1/N."""

    def sample_data(self, layer, tensors):
        values = [abs_max_value(t) for t in tensors]
        if not self.abs_max_vals:
            self.abs_max_vals = [[] for _ in values]
        for seen, value in zip(self.abs_max_vals, values):
            seen.append(value)

    def cal_thresholds(self):
        self.thresholds = [float(np.mean(seen)) for seen in self.abs_max_vals]


def mse_threshold(hist, abs_max, bits, sub_bins=8):
    """The clipping threshold with the least mean squared quantization error.

    `hist` counts |x| in equal bins over [0, abs_max]. Each bin's count is spread over
    `sub_bins` points inside it, so the rounding error is averaged within a bin rather
    than taken at one point; every bin edge is a candidate threshold.
    """
    levels = 2 ** (bits - 1) - 1
    width = abs_max / len(hist)
    offsets = (np.arange(sub_bins) + 0.5) / sub_bins
    points = ((np.arange(len(hist))[:, None] + offsets) * width).ravel()
    weights = np.repeat(np.asarray(hist, np.float64) / sub_bins, sub_bins)
    points, weights = points[weights > 0], weights[weights > 0]
    candidates = np.arange(1, len(hist) + 1) * width
    errors = []
    for chunk in np.array_split(candidates, max(1, len(candidates) // 64)):
        t = chunk[:, None]
        dequantized = np.minimum(np.round(points / t * levels), levels) * t / levels
        errors.append(((points - dequantized) ** 2 * weights).sum(axis=1))
    return float(candidates[int(np.argmin(np.concatenate(errors)))])


class MSEQuantizer(BaseHistQuantizer):
    """Paddle's histogram collection with a least-squared-error threshold search."""

    def cal_thresholds(self):
        self.thresholds = [abs_max if hist is None else
                           mse_threshold(hist, abs_max, self.quant_bits)
                           for abs_max, hist in zip(self.abs_max_vals, self.hists)]


def _kl_fits(bits, bins):
    # Paddle's KL search merges bins into 2^(bits-1)-1 levels from bins/2 upwards.
    return 2 ** (bits - 1) - 1 < bins // 2


# name -> (Paddle-style quantizer class, options it accepts with their defaults)
HIST_OPTIONS = {"bins": 1024, "upsample_bins": 64}
ALGORITHMS = {
    "abs_max": (AbsmaxQuantizer, {}),
    "avg": (AverageAbsmaxQuantizer, {}),
    "hist": (HistQuantizer, dict(HIST_OPTIONS, hist_percent=0.99999)),
    "KL": (KLQuantizer, dict(HIST_OPTIONS)),
    "mse": (MSEQuantizer, dict(HIST_OPTIONS)),
}


def algorithm_name(algo):
    """The canonical spelling of `algo` ('kl' -> 'KL'); CalibrationError if unknown."""
    by_lower = {name.lower(): name for name in ALGORITHMS}
    name = by_lower.get(str(algo).lower())
    if name is None:
        raise CalibrationError("unknown calibration algorithm {!r}: choose one of {} "
                               "(algo: in the ResidualPTQ section)".format(
                                   algo, ", ".join(ALGORITHMS)))
    return name


def check_options(algo, options):
    """Options for `algo` merged over its defaults; unknown keys and bad values raise."""
    name = algorithm_name(algo)
    defaults = ALGORITHMS[name][1]
    options = dict(options or {})
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise CalibrationError("algo_config key(s) {} do not apply to {}; it takes {}".format(
            ", ".join(unknown), name, ", ".join(defaults) or "no options"))
    merged = dict(defaults, **options)
    for key in ("bins", "upsample_bins"):
        if key in merged and (not isinstance(merged[key], int) or merged[key] < 16):
            raise CalibrationError("algo_config {} must be an integer >= 16, got {!r}".format(
                key, merged[key]))
    percent = merged.get("hist_percent")
    if percent is not None and not 0.5 <= percent < 1.0:
        raise CalibrationError("algo_config hist_percent must be in [0.5, 1), got {!r} "
                               "(e.g. 0.999 clips the top 0.1% of values)".format(percent))
    return name, merged


class Calibrator:
    """Collects one quantizer's inputs (observe) and gives its threshold (threshold)."""

    def __init__(self, algo, bits=8, options=None):
        self.algo, self.options = check_options(algo, options)
        self.bits = bits
        if self.algo == "KL" and not _kl_fits(bits, self.options["bins"]):
            # 16-bit places: KL's level merging needs far more bins; abs max loses nothing.
            self.algo, self.options = "abs_max", {}
        quantizer_class = ALGORITHMS[self.algo][0]
        self._quantizer = quantizer_class(quant_bits=bits, **self.options)
        self.observed = 0   # forward calls seen (a shared quantizer sees several per batch)
        self.abs_max = 0.0

    def observe(self, tensor):
        if tensor.size == 0:
            return
        value = abs_max_value(tensor)
        if not math.isfinite(value):
            raise CalibrationError("calibration data contains inf or NaN; check the input "
                                   "images and the float weights")
        self._quantizer.sample_data(None, (tensor,))
        self.abs_max = max(self.abs_max, value)
        self.observed += 1

    def threshold(self):
        if self.observed == 0:
            raise CalibrationError("no data was observed")
        self._quantizer.thresholds = []
        self._quantizer.cal_thresholds()
        value = float(np.asarray(self._quantizer.thresholds[0]).reshape(-1)[0])
        if not value > 0:  # hist's percentile fell into the first bin: clip nothing
            value = self.abs_max
        return max(value, MIN_THRESHOLD)


def make_calibrator(algo, bits=8, options=None):
    return Calibrator(algo, bits, options)
