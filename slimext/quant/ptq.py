"""PTQCalibrator: the QATQuantizer plan and quantizers, with scales from calibration data.

    ptq = PTQCalibrator(backend="onednn", algo="KL")
    model = ptq.quantize(model, lambda m: [m(batch) for batch in batches], example_inputs=[x])
    ptq.save_quantized_model(model, "out/model", input_spec=[...])

`quantize` = `prepare` + a `calibrating(model)` block around the loop: inside the block the
quantizers pass their input through (the model runs in float) and every activation
quantizer's input is sampled; leaving it normally writes the thresholds into the scales (a
fake-quant model from then on), leaving it by an exception restores the quantizers and
drops the samples, so nothing stays bypassed and calibration can simply run again. A
prepared model that was never calibrated refuses to run outside calibration rather than
compute with scales nobody set.

ppdet's flow (slimext.slim.residual_ptq) needs the steps apart: `ptq(model)` prepares and
opens calibration, ppdet runs the batches, `finish_calibration` (called by
save_quantized_model) closes it; `abort_calibration` is the exception path.

Activation quantizers are the conv/linear inputs ('<layer>/input') and the plan's join
quantizers; weights keep PaddleSlim's channel-wise abs max, computed from the weights.
"""
import logging
from contextlib import contextmanager

import numpy as np

from slimext.quant.calibration import CalibrationError, make_calibrator
from slimext.quant.qat import DEFAULT_INPUT_SHAPE, QATQuantizer
from slimext.quant.quantizers import all_quantizers, bypassed
from slimext.quant.settings import PTQSettings
from slimext.compat.quantizer_internals import (is_moving_average, quant_bits,
                                                set_moving_average_state)

logger = logging.getLogger("slimext.ptq")


def _is_activation(name):
    return not name.endswith("/weight")


class PTQCalibrator:
    def __init__(self, backend="onednn", algo="KL", rules=None, quant_config=None,
                 algo_config=None, input_shape=DEFAULT_INPUT_SHAPE, max_batches=None,
                 strict=False):
        settings = PTQSettings.parse(backend=backend, algo=algo, algo_config=algo_config,
                                     quant_config=quant_config, rules=rules,
                                     input_shape=input_shape, strict=strict)
        self._setup(settings, max_batches)

    @classmethod
    def from_settings(cls, settings, max_batches=None, check_coverage=True):
        """A calibrator for settings already checked (PTQSettings.parse)."""
        calibrator = cls.__new__(cls)
        calibrator._setup(settings, max_batches, check_coverage)
        return calibrator

    def _setup(self, settings, max_batches, check_coverage=True):
        self.settings = settings
        self.algo, self.algo_config = settings.algo, settings.algo_config
        # An int, None (every batch) or a callable read at each batch (ppdet applies -o
        # overrides after the slim object is built).
        self.max_batches = max_batches
        self.batch_limit()
        self.qat = QATQuantizer.from_settings(settings, check_coverage=check_coverage)
        self.calibrators = {}
        self.thresholds = None
        self.batches = 0
        self._model = None
        self._hooks = []
        self._bypass = None
        self._guard = None

    @property
    def plan(self):
        return self.qat.plan

    @property
    def handler(self):
        return self.qat.handler

    def quantizer(self, name):
        return all_quantizers(self._model, self.plan)[name]

    def __call__(self, model, example_inputs=None):
        """Prepare `model` and open calibration (ppdet's flow); see `quantize` for one call."""
        model = self.prepare(model, example_inputs)
        self.start_calibration(model)
        return model

    def quantize(self, model, calibration_loop, example_inputs=None):
        """Prepare `model`, run `calibration_loop(model)` inside `calibrating`, return the
        calibrated fake-quant model. The loop calls model(batch) on representative data."""
        model = self.prepare(model, example_inputs)
        with self.calibrating(model):
            calibration_loop(model)
        return model

    def prepare(self, model, example_inputs=None):
        """Put the plan's quantizers into `model` (uncalibrated; it runs only once calibrated)."""
        model.eval()  # PTQ never trains: batch norm keeps its statistics while calibrating
        model = self.qat(model, example_inputs)
        self.batches, self.thresholds = 0, None
        quantizers = all_quantizers(model, self.plan)
        for name, layer in quantizers.items():
            if _is_activation(name) and not is_moving_average(layer):
                raise CalibrationError("quantizer {} is a {}, which has no fixed scale to "
                                       "calibrate".format(name, type(layer).__name__))
        self._model = model
        self._guard = model.register_forward_pre_hook(self._refuse_uncalibrated)
        return model

    @contextmanager
    def calibrating(self, model):
        """Calibration window: float forwards are sampled inside; thresholds are written on
        a normal exit, everything is restored (and nothing written) on an exception."""
        self.start_calibration(model)
        try:
            yield model
        except BaseException:
            self.abort_calibration()
            raise
        self.finish_calibration(model)

    def start_calibration(self, model):
        self._check_model(model, "start_calibration")
        if self._bypass is not None:
            raise CalibrationError("calibration is already running on this model")
        self.batches, self.thresholds = 0, None
        quantizers = all_quantizers(model, self.plan)
        activations = {n: q for n, q in quantizers.items() if _is_activation(n)}
        self.calibrators = {name: make_calibrator(self.algo, quant_bits(layer), self.algo_config)
                            for name, layer in activations.items()}
        self._hooks = [model.register_forward_pre_hook(self._count_batch)]
        self._hooks += [layer.register_forward_pre_hook(self._sampler(name))
                        for name, layer in activations.items()]
        # Calibration runs the float model: statistics of what the float network computes.
        self._bypass = bypassed(quantizers.values())
        self._bypass.__enter__()

    def abort_calibration(self):
        """End a calibration without writing anything: quantizers active again, samples
        dropped, the model uncalibrated (calibrate again to use it). Safe to call twice."""
        self._end_sampling()
        self.calibrators = {}
        self.batches = 0

    def _end_sampling(self):
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        if self._bypass is not None:
            bypass, self._bypass = self._bypass, None
            bypass.__exit__(None, None, None)

    def _check_model(self, model, what):
        if self._model is None or model is not self._model:
            raise CalibrationError("{} needs the model this PTQCalibrator prepared (the one "
                                   "ptq(model) or ptq.prepare(model) returned)".format(what))

    def _refuse_uncalibrated(self, _model, _inputs):
        if self._bypass is None and self.thresholds is None:
            raise CalibrationError("this model's quantizers are not calibrated (calibration "
                                   "never ran or was interrupted): use ptq.quantize(model, "
                                   "loop) or run the batches inside `with ptq.calibrating("
                                   "model):`")
        return None

    def batch_limit(self):
        limit = self.max_batches() if callable(self.max_batches) else self.max_batches
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)
                                  or limit < 1):
            raise CalibrationError("the number of calibration batches must be a positive "
                                   "integer, got {!r} (quant_batch_num / max_batches)"
                                   .format(limit))
        return limit

    def _count_batch(self, model, _inputs):
        if model.training:
            raise CalibrationError("the model is in training mode during calibration, which "
                                   "would change its batch-norm statistics; call model.eval()")
        self.batches += 1
        return None

    def _sampler(self, name):
        calibrator = self.calibrators[name]

        def hook(_layer, inputs):
            limit = self.batch_limit()
            if limit is None or self.batches <= limit:
                calibrator.observe(inputs[0])
            return None

        return hook

    def _check_observed(self):
        if self.batches == 0:
            raise CalibrationError("no calibration batch ran: call model(batch) on a few "
                                   "representative batches after ptq(model) and before "
                                   "finish_calibration/save_quantized_model")
        unseen = [name for name, c in self.calibrators.items() if c.observed == 0]
        if unseen:
            raise CalibrationError(
                "{} quantizer(s) saw no calibration data: {}; the batches never ran through "
                "them: calibrate with inputs that take that path, or leave them in float with "
                "a rule {{match: '<layer path or join site>', skip: true}}".format(
                    len(unseen), ", ".join(unseen[:10])))

    def finish_calibration(self, model):
        """Compute every threshold, write it into its quantizer and stop sampling.

        Returns {quantizer name: threshold}. From here on `model` is the fake-quant model
        the export will be (its dygraph accuracy is the PTQ accuracy). Idempotent.
        """
        self._check_model(model, "finish_calibration")
        if self.thresholds is not None:
            return self.thresholds
        if self._bypass is None:
            raise CalibrationError("no calibration is running: it was interrupted or never "
                                   "started; use ptq.quantize(model, loop) or "
                                   "`with ptq.calibrating(model): ...`")
        try:
            self._check_observed()
            thresholds = {name: c.threshold() for name, c in self.calibrators.items()}
        except BaseException:
            self.abort_calibration()
            raise
        self._end_sampling()
        quantizers = all_quantizers(model, self.plan)
        for name, value in thresholds.items():
            _write_scale(quantizers[name], value)
        _compute_weight_scales(model, quantizers)
        self.thresholds = thresholds
        clipped = sum(1 for n, c in self.calibrators.items() if thresholds[n] < c.abs_max)
        logger.info("%s calibration on %d batch(es): %d activation quantizers, %d clip below "
                    "their observed abs max", self.algo, self.used_batches(), len(thresholds),
                    clipped)
        return thresholds

    def used_batches(self):
        limit = self.batch_limit()
        return self.batches if limit is None else min(self.batches, limit)

    def table(self):
        """Per quantizer: observed abs max and calibrated threshold."""
        lines = ["{:<52} {:>10} {:>10} {:>6}".format("activation quantizer", "abs max",
                                                     "threshold", "ratio")]
        for name, c in self.calibrators.items():
            value = (self.thresholds or {}).get(name)
            lines.append("{:<52} {:>10.4g} {:>10} {:>6}".format(
                name, c.abs_max, "-" if value is None else "{:.4g}".format(value),
                "-" if value is None or not c.abs_max else "{:.2f}".format(value / c.abs_max)))
        return "\n".join(lines)

    def save_quantized_model(self, model, path, input_spec=None, **config):
        """Finish calibration (if not done) and write the validated INT8 QDQ export."""
        self.finish_calibration(model)
        return self.qat.save_quantized_model(model, path, input_spec=input_spec)


def _compute_weight_scales(model, quantizers):
    """Run every weight quantizer on its weight once: it stores the (channel-wise) abs max
    that the export reads. Bypassed during calibration, they have not computed it yet."""
    layers = dict(model.named_sublayers())
    for name, quantizer in quantizers.items():
        if not _is_activation(name):
            quantizer(layers[name.rsplit("/", 1)[0]].weight)


def _write_scale(layer, threshold):
    """Fix a moving-average quantizer at `threshold`, as if it had seen one batch with
    that abs max (so QAT fine-tuning could continue from it)."""
    value = np.array([threshold], dtype="float32")
    set_moving_average_state(layer, scale=value, state=np.ones([1], dtype="float32"),
                             accum=value)
