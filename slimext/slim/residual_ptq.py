"""`slim: ResidualPTQ` for ppdet slim YAML (used by tools/post_quant.py).

ppdet's flow: build_slim_model(cfg, slim_config, mode='test') creates the detector, calls
this class on it and loads cfg.weights; Trainer.post_quant runs `quant_batch_num` eval
batches through the model and calls save_quantized_model.
"""
from ppdet.core.workspace import register, serializable
from ppdet.utils.logger import setup_logger

from slimext.quant.ptq import PTQCalibrator
from slimext.slim.input_spec import detector_inputs, prune_unused_inputs
from slimext.slim.residual_qat import _configured_input_shape, log_plan
from slimext.slim.settings import PTQ_METHOD, parse_slim_settings

logger = setup_logger(__name__)


def _global_setting(key, default=None):
    from ppdet.core.workspace import global_config

    return global_config.get(key, default)


def _quant_batch_num():
    # ppdet's post_quant loop reads the same key (and runs one batch more than it says).
    return _global_setting("quant_batch_num", 10)


def load_float_weights(model):
    """Load cfg.weights into the float model before it is quantized.

    ppdet loads weights only after the slim class has run; by then layers with a deploy
    form (RepVGG-style blocks) have been converted and no longer match a float training
    checkpoint. Loading first makes the conversion fold the trained weights. Without a
    readable file nothing is loaded here: ppdet's own load reports it, and a plan printout
    (tools/quant_plan.py) needs no weights.
    """
    import os

    from ppdet.utils.checkpoint import is_url, load_pretrain_weight

    weights = _global_setting("weights")
    if weights and (is_url(weights) or os.path.isfile(str(weights) + ".pdparams")
                    or os.path.isfile(str(weights))):
        load_pretrain_weight(model, weights)


@register
@serializable
class ResidualPTQ(object):
    """Post-training quantization on the ResidualQAT plan (same joins, rules, export).

    backend: onednn | tensorrt | shared (see docs/residual_qat.md)
    algo: abs_max | avg | hist | KL | mse (see docs/ptq.md)
    algo_config: options of the algorithm (bins, upsample_bins, hist_percent)
    quant_config: PaddleSlim's quantization keys (weight type and bits, activation bits)
    rules: ordered per-layer / per-join rules, last match wins
    strict: a join of activations that gets no quantizer stops the run (default: a warning)
    The number of calibration batches is the top-level `quant_batch_num` ppdet reads.
    """

    def __init__(self, backend="onednn", algo="KL", algo_config=None, quant_config=None,
                 rules=None, input_shape=None, print_plan=True, strict=False):
        # Checked now, so a typo fails before any model is built or weight loaded.
        self._setup(parse_slim_settings(PTQ_METHOD, dict(
            backend=backend, algo=algo, algo_config=algo_config, quant_config=quant_config,
            rules=rules, input_shape=input_shape, print_plan=print_plan, strict=strict)))

    @classmethod
    def from_settings(cls, settings):
        """The slim class for SlimSettings already parsed (slimext's own model builder)."""
        slim = cls.__new__(cls)
        slim._setup(settings)
        return slim

    def _setup(self, settings):
        self.settings = settings
        self.print_plan = settings.print_plan
        self.core = self._make_core()

    @property
    def rules(self):
        return list(self.settings.quant.rules)

    def _make_core(self, check_coverage=True):
        quant = self.settings.quant
        settings = quant.replace(input_shape=quant.input_shape or _configured_input_shape())
        return PTQCalibrator.from_settings(settings, max_batches=_quant_batch_num,
                                           check_coverage=check_coverage)

    def __call__(self, model, check_coverage=True, print_plan=None):
        """Load the float weights, quantize `model` and open calibration (ppdet's flow).
        check_coverage / print_plan: as for ResidualQAT."""
        from ppdet.core.workspace import global_config

        if print_plan is not None:
            self.print_plan = print_plan
        load_float_weights(model)
        self.core = self._make_core(check_coverage)  # a fresh core per model
        model = self.core(model)
        # ppdet's Trainer builds the TestDataset that post_quant's infer_cfg.yml reads its
        # label list from only for slim_type 'PTQ' (ppdet's name for post-training quant).
        if global_config.get("slim_type") == "ResidualPTQ":
            global_config["slim_type"] = "PTQ"
        log_plan(logger, "ResidualPTQ", self.core.plan, self.print_plan)
        return model

    @property
    def plan(self):
        return self.core.plan

    def finish_calibration(self, model):
        thresholds = self.core.finish_calibration(model)
        if self.print_plan:
            logger.info("ResidualPTQ thresholds ({}, {} calibration batch(es))\n{}".format(
                self.core.algo, self.core.used_batches(), self.core.table()))
        return thresholds

    def abort_calibration(self):
        """The exception path of ppdet's flow: quantizers active again, nothing written."""
        self.core.abort_calibration()

    def save_quantized_model(self, layer, path, input_spec=None, **config):
        self.finish_calibration(layer)
        trace_spec = None
        if input_spec is not None:
            # Traced with every detector input (GFL's forward reads im_shape even where
            # its outputs do not use it), saved with those the program reads.
            trace_spec = detector_inputs(input_spec)
            input_spec = prune_unused_inputs(layer, trace_spec)
        report = self.core.save_quantized_model(layer, path, input_spec=input_spec,
                                                trace_spec=trace_spec)
        logger.info("ResidualPTQ export: {}".format(report))
        return report
