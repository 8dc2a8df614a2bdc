"""QATQuantizer: PaddleSlim's conv/linear QAT plus quantizers at the joins PaddleSlim misses.

    qat = QATQuantizer(backend="onednn")
    model = qat(model, example_inputs=[x])
    print(qat.plan)
    ... train ...; qat.finalize()   # ends the observers (e.g. writes a monitor's report)
    qat.save_quantized_model(model, "out/model", input_spec=[...])

After quantizing, every join of activations that interception could not see or could not
quantize is reported (a warning; an error with strict=True), see slimext.quant.coverage.
"""
import logging

import paddle

from slimext.quant.apply import QUANTIZERS_ATTR, attach_join_quantizers
from slimext.quant.coverage import JoinCoverageError, report_uncovered, trace_uncovered_joins
from slimext.quant.joins import trace_joins
from slimext.quant.plan import build_plan
from slimext.quant.settings import QuantSettings
from slimext.compat.quantizer_internals import (is_moving_average, layer_quantizers,
                                                quantize_layer_inputs_only, set_quant_bits,
                                                start_moving_average_at_next_batch)

logger = logging.getLogger("slimext.qat")

DEFAULT_INPUT_SHAPE = (1, 3, 320, 320)


def start_scales_at_first_batch(model):
    """Paddle's moving-average quantizers start with state = accum = 1, so the first training
    step's scale is (0.9 + max) / 1.9: about half the tensor's range is clipped and it takes
    some ten steps to recover. Where outputs go through exp (YOLOv3's box sizes) that first
    step's loss is several times the float model's and the next one is NaN. Restarted, the
    first batch sets each scale to its own abs max; a checkpoint loaded afterwards (resume,
    eval, export) brings its own values."""
    for layer in model.sublayers():
        if is_moving_average(layer):
            start_moving_average_at_next_batch(layer)


def _ppdet_example_inputs(input_shape):
    """The dict a ppdet detector takes at inference, with a random image."""
    n, _, h, w = input_shape
    return [{"image": paddle.randn(input_shape),
             "im_shape": paddle.to_tensor([[float(h), float(w)]] * n),
             "scale_factor": paddle.ones([n, 2])}]


def _is_ppdet_detector(model):
    return hasattr(model, "model_arch") and hasattr(model, "get_pred")


class QATQuantizer:
    """monitor: an observer with attach(model, qat) and finalize() (e.g.
    slimext.analysis.monitor.JoinErrorMonitor), or None.
    strict: joins of activations that get no quantizer are an error, not a warning.
    check_coverage: trace the float model for joins interception missed (one to_static
        trace); the export validator checks the exported program either way."""

    def __init__(self, backend="onednn", quant_config=None, rules=None,
                 input_shape=DEFAULT_INPUT_SHAPE, monitor=None, strict=False,
                 check_coverage=True):
        # Every setting is checked before any model work.
        settings = QuantSettings.parse(backend=backend, quant_config=quant_config, rules=rules,
                                       input_shape=input_shape, strict=strict)
        self._setup(settings, monitor, check_coverage)

    @classmethod
    def from_settings(cls, settings, monitor=None, check_coverage=True):
        """A quantizer for settings already checked (QuantSettings.parse)."""
        quantizer = cls.__new__(cls)
        quantizer._setup(settings, monitor, check_coverage)
        return quantizer

    def _setup(self, settings, monitor, check_coverage):
        self.settings = settings
        self.backend = settings.backend
        self.quant_config = dict(settings.quant_config)
        self.rules = list(settings.rules)
        self.input_shape = list(settings.input_shape or DEFAULT_INPUT_SHAPE)
        if monitor is False:
            monitor = None
        is_observer = hasattr(monitor, "attach") and hasattr(monitor, "finalize")
        if monitor is not None and not is_observer:
            raise TypeError("QATQuantizer(monitor=...) takes an observer with attach(model, qat) "
                            "and finalize(), e.g. slimext.analysis.monitor.monitor_from_config("
                            "{{'every_n_steps': 20}}), got {!r}; in a slim YAML the `monitor:` "
                            "key builds it".format(monitor))
        self.monitor = monitor
        self.strict = settings.strict
        self.check_coverage = check_coverage
        self.plan = None
        self.handler = None
        self.uncovered = []   # descriptions of joins left without quantizers (see coverage)

    def _example_inputs(self, model, example_inputs):
        if example_inputs is not None:
            return list(example_inputs)
        if _is_ppdet_detector(model):
            return _ppdet_example_inputs(self.input_shape)
        raise ValueError("QATQuantizer needs example_inputs for a {} (a list of tensors its "
                         "forward takes); only ppdet detectors get them built from "
                         "input_shape".format(type(model).__name__))

    def _quantizable_layers(self, model):
        types = tuple(getattr(paddle.nn, name) for name in
                      self.quant_config["quantizable_layer_type"])
        return [(path, type(layer).__name__, bool(getattr(layer, "skip_quant", False)))
                for path, layer in model.named_sublayers() if isinstance(layer, types)]

    def _wrap_layers(self, model):
        """PaddleSlim's input/weight quantizers on conv/linear, with per-layer bits."""
        from paddleslim import QAT

        # The plan decides, also over a model's own skip_quant mark (a rule may override it).
        skipped = {s.path: s.skipped for s in self.plan.layers}
        for path, layer in model.named_sublayers():
            if path in skipped:
                layer.skip_quant = skipped[path]
        # onnx_format is always true (checked in settings): the export writes QDQ.
        self.slim_qat = QAT(config=dict(self.quant_config))
        # Only the input side: output observers would add QDQ after every conv, which
        # splits conv + batch-norm + activation fusion in the INT8 runtime.
        quantize_layer_inputs_only(self.slim_qat, model)
        settings = {s.path: s for s in self.plan.layers}
        for path, layer in model.named_sublayers():
            setting = settings.get(path)
            if setting is None or setting.skipped:
                continue
            bits = {"weight": setting.weight_bits, "input": setting.activation_bits}
            for place, quantizer in layer_quantizers(layer).items():
                set_quant_bits(quantizer, bits[place])

    def __call__(self, model, example_inputs=None):
        if hasattr(model, QUANTIZERS_ATTR):
            raise ValueError("this model already has slimext quantizers; build a fresh "
                             "model to quantize it again")
        for layer in model.sublayers():
            if hasattr(layer, "convert_to_deploy"):
                layer.convert_to_deploy()
        inputs = self._example_inputs(model, example_inputs)
        training = model.training
        model.eval()
        discovery = trace_joins(model, inputs)
        self.joins = discovery.joins
        self.plan = build_plan(self.joins, self._quantizable_layers(model), self.backend,
                               self.rules, self.quant_config["weight_bits"],
                               self.quant_config["activation_bits"])
        self.uncovered = self._check_coverage(model, inputs, discovery)
        self._wrap_layers(model)
        self.handler = attach_join_quantizers(model, self.plan,
                                              self.quant_config["moving_rate"])
        start_scales_at_first_batch(model)
        if self.monitor is not None:
            self.monitor.attach(model, self)
        if training:
            model.train()
        return model

    def _check_coverage(self, model, inputs, discovery):
        """Joins no quantizer will see: in-place forms (from discovery) and forms
        interception does not patch (from a static trace of the float model)."""
        lines = [join.describe() for join in discovery.unquantizable]
        if lines:
            message = "{} join(s) of activations cannot be quantized: {}".format(
                len(lines), "; ".join(lines))
            if self.strict:
                raise JoinCoverageError(message)
            logger.warning(message + "; they stay in float")
        if not self.check_coverage:
            return lines
        try:
            uncovered = trace_uncovered_joins(model, inputs)
        except JoinCoverageError:
            raise
        except Exception as error:  # a model that cannot be traced still trains
            message = ("join coverage not checked: the model could not be traced with "
                       "paddle.jit.to_static ({}: {}); the export validator checks it "
                       "again".format(type(error).__name__,
                                      (str(error).strip().splitlines() or [""])[-1]))
            if self.strict:
                raise JoinCoverageError(message + " (strict: true)")
            logger.warning(message)
            return lines
        return lines + report_uncovered(uncovered, "model", self.strict)

    def quantizer(self, name):
        """The quantizer layer of a plan entry, e.g. qat.quantizer('neck:add#0/out')."""
        from slimext.quant.apply import quantizer_key

        return self.handler.quantizers[quantizer_key(name)]

    def finalize(self):
        """End of training: the monitor's finalize() result (its report), if one is set."""
        if self.monitor is not None:
            return self.monitor.finalize()
        return None

    def save_quantized_model(self, model, path, input_spec=None, trace_spec=None, **config):
        from slimext.quant.export import export_quantized_model

        return export_quantized_model(model, path, input_spec, self.plan, self.handler,
                                      strict=self.strict, trace_spec=trace_spec)
