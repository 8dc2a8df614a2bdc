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

from slimext.quant.calibration import CalibrationError
from slimext.quant.calibration_session import CalibrationSession
from slimext.quant.qat import DEFAULT_INPUT_SHAPE, QATQuantizer
from slimext.quant.quantizers import all_quantizers
from slimext.quant.settings import PTQSettings
from slimext.compat.quantizer_internals import is_moving_average, set_moving_average_state

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
        self.thresholds = None
        self._session = None      # the CalibrationSession of the last calibration
        self._model = None
        self._guard = None

    @property
    def plan(self):
        return self.qat.plan

    @property
    def handler(self):
        return self.qat.handler

    @property
    def calibrators(self):
        """{activation quantizer name: its calibrator} of the last calibration."""
        return self._session.calibrators if self._session else {}

    @property
    def batches(self):
        """Forward passes seen by the last calibration (sampled or not)."""
        return self._session.batches if self._session else 0

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
        self.thresholds, self._session = None, None
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

    def _running(self):
        return self._session is not None and self._session.open

    def start_calibration(self, model):
        self._check_model(model, "start_calibration")
        if self._running():
            raise CalibrationError("calibration is already running on this model")
        self.thresholds = None
        quantizers = all_quantizers(model, self.plan)
        # Calibration runs the float model: statistics of what the float network computes.
        self._session = CalibrationSession(model, quantizers,
                                           [n for n in quantizers if _is_activation(n)],
                                           self.algo, self.algo_config, self.batch_limit)

    def abort_calibration(self):
        """End a calibration without writing anything: quantizers active again, samples
        dropped, the model uncalibrated (calibrate again to use it). Safe to call twice."""
        if self._session is not None:
            self._session.close()
        self._session = None

    def _check_model(self, model, what):
        if self._model is None or model is not self._model:
            raise CalibrationError("{} needs the model this PTQCalibrator prepared (the one "
                                   "ptq(model) or ptq.prepare(model) returned)".format(what))

    def _refuse_uncalibrated(self, _model, _inputs):
        if not self._running() and self.thresholds is None:
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

    def finish_calibration(self, model):
        """Compute every threshold, write it into its quantizer and stop sampling.

        Returns {quantizer name: threshold}. From here on `model` is the fake-quant model
        the export will be (its dygraph accuracy is the PTQ accuracy). Idempotent.
        """
        self._check_model(model, "finish_calibration")
        if self.thresholds is not None:
            return self.thresholds
        if not self._running():
            raise CalibrationError("no calibration is running: it was interrupted or never "
                                   "started; use ptq.quantize(model, loop) or "
                                   "`with ptq.calibrating(model): ...`")
        try:
            thresholds = self._session.thresholds()
        except BaseException:
            self.abort_calibration()
            raise
        self._session.close()
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
        return self._session.used_batches() if self._session else 0

    def table(self):
        """Per quantizer: observed abs max and calibrated threshold."""
        if self._session is None:
            return "no calibration has run"
        return self._session.table(self.thresholds)

    def save_quantized_model(self, model, path, input_spec=None, trace_spec=None, **config):
        """Finish calibration (if not done) and write the validated INT8 QDQ export
        (trace_spec: see QATQuantizer.save_quantized_model)."""
        self.finish_calibration(model)
        return self.qat.save_quantized_model(model, path, input_spec=input_spec,
                                             trace_spec=trace_spec)


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
