"""ResidualQAT: PaddleSlim's conv/linear QAT plus quantizers at the joins PaddleSlim misses.

    qat = ResidualQAT(backend="onednn")
    model = qat(model, example_inputs=[x])
    print(qat.plan)
    ... train ...; qat.finalize()   # writes the join error report when `monitor` is set
    qat.save_quantized_model(model, "out/model", input_spec=[...])
"""
import paddle

from slimext.quant.apply import QUANTIZERS_ATTR, attach_join_quantizers
from slimext.quant.joins import discover_joins
from slimext.quant.plan import build_plan

# PaddleSlim's defaults for PicoDet-style QAT; any key can be overridden by quant_config.
DEFAULT_QUANT_CONFIG = {
    "weight_quantize_type": "channel_wise_abs_max",
    "activation_quantize_type": "moving_average_abs_max",
    "weight_bits": 8,
    "activation_bits": 8,
    "moving_rate": 0.9,
    "activation_preprocess_type": None,
    "weight_preprocess_type": None,
    "quantizable_layer_type": ["Conv2D", "Linear"],
    "onnx_format": True,
}


def _ppdet_example_inputs(input_shape):
    """The dict a ppdet detector takes at inference, with a random image."""
    n, _, h, w = input_shape
    return [{"image": paddle.randn(input_shape),
             "im_shape": paddle.to_tensor([[float(h), float(w)]] * n),
             "scale_factor": paddle.ones([n, 2])}]


def _is_ppdet_detector(model):
    return hasattr(model, "model_arch") and hasattr(model, "get_pred")


class ResidualQAT:
    def __init__(self, backend="onednn", quant_config=None, rules=None,
                 input_shape=(1, 3, 320, 320), monitor=None):
        self.backend = backend
        self.quant_config = dict(DEFAULT_QUANT_CONFIG)
        self.quant_config.update(quant_config or {})
        self.rules = list(rules or [])
        self.input_shape = list(input_shape)
        self.monitor = None
        if monitor is not None and monitor is not False:
            from slimext.analysis.monitor import monitor_from_config

            # Checked here so a bad `monitor` setting fails before any model work.
            self.monitor = monitor_from_config(monitor)
        self.plan = None
        self.handler = None

    def _example_inputs(self, model, example_inputs):
        if example_inputs is not None:
            return list(example_inputs)
        if _is_ppdet_detector(model):
            return _ppdet_example_inputs(self.input_shape)
        raise ValueError("ResidualQAT needs example_inputs for a {} (a list of tensors its "
                         "forward takes); only ppdet detectors get them built from "
                         "input_shape".format(type(model).__name__))

    def _quantizable_layers(self, model):
        types = tuple(getattr(paddle.nn, name) for name in
                      self.quant_config["quantizable_layer_type"])
        return [(path, type(layer).__name__) for path, layer in model.named_sublayers()
                if isinstance(layer, types)]

    def _wrap_layers(self, model):
        """PaddleSlim's input/weight quantizers on conv/linear, with per-layer bits."""
        from paddleslim import QAT

        skipped = {s.path for s in self.plan.layers if s.skipped}
        for path, layer in model.named_sublayers():
            if path in skipped:
                layer.skip_quant = True
        config = {k: v for k, v in self.quant_config.items() if k != "onnx_format"}
        self.slim_qat = QAT(config=dict(config, onnx_format=True))
        # Only the input side: output observers would add QDQ after every conv, which
        # splits conv + batch-norm + activation fusion in the INT8 runtime.
        self.slim_qat.imperative_qat._quantize_inputs.apply(model)
        settings = {s.path: s for s in self.plan.layers}
        for path, layer in model.named_sublayers():
            setting = settings.get(path)
            if setting is None or setting.skipped:
                continue
            weight_quant = getattr(layer, "_fake_quant_weight", None)
            input_quant = getattr(layer, "_fake_quant_input", None)
            if weight_quant is not None:
                weight_quant._quant_bits = setting.weight_bits
            if input_quant is not None:
                input_quant._quant_bits = setting.activation_bits

    def __call__(self, model, example_inputs=None):
        if hasattr(model, QUANTIZERS_ATTR):
            raise ValueError("this model already has ResidualQAT quantizers; build a fresh "
                             "model to quantize it again")
        for layer in model.sublayers():
            if hasattr(layer, "convert_to_deploy"):
                layer.convert_to_deploy()
        inputs = self._example_inputs(model, example_inputs)
        training = model.training
        model.eval()
        joins = discover_joins(model, inputs)
        self.joins = joins
        self.plan = build_plan(joins, self._quantizable_layers(model), self.backend,
                               self.rules, self.quant_config["weight_bits"],
                               self.quant_config["activation_bits"])
        self._wrap_layers(model)
        self.handler = attach_join_quantizers(model, self.plan,
                                              self.quant_config["moving_rate"])
        if self.monitor is not None:
            self.monitor.attach(model, self)
        if training:
            model.train()
        return model

    def quantizer(self, name):
        """The quantizer layer of a plan entry, e.g. qat.quantizer('neck:add#0/out')."""
        from slimext.quant.apply import quantizer_key

        return self.handler.quantizers[quantizer_key(name)]

    def finalize(self):
        """End of training: write the join error monitor's report (if one is configured)."""
        if self.monitor is not None:
            return self.monitor.finalize()
        return None

    def save_quantized_model(self, model, path, input_spec=None, **config):
        from slimext.quant.export import export_quantized_model

        return export_quantized_model(model, path, input_spec, self.plan, self.handler)
