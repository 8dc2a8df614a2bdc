"""`slim: ResidualQAT` for ppdet slim YAML (used by tools/train.py, eval.py, export_model.py)."""
import os

from ppdet.core.workspace import register, serializable
from ppdet.utils.logger import setup_logger

from slimext.analysis.monitor import monitor_from_config
from slimext.distributed import is_main_rank
from slimext.quant.qat import QATQuantizer
from slimext.slim.input_spec import detector_inputs
from slimext.slim.settings import QAT_METHOD, parse_slim_settings

logger = setup_logger(__name__)


def _configured_input_shape():
    """The TestReader's image shape, the deploy shape used to discover the joins.
    PaddleDetection writes it [N, C, H, W] (PicoDet) or [C, H, W] (PP-YOLOE, YOLOv3)."""
    from ppdet.core.workspace import global_config

    shape = (global_config.get("TestReader", {}).get("inputs_def", {}) or {}).get("image_shape")
    if shape and len(shape) == 3:
        shape = [1] + list(shape)
    if shape and len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape[1:]):
        return [1] + list(shape[1:])
    return [1, 3, 320, 320]


def log_plan(logger, method, plan, how):
    """how: True logs the plan table, "summary" its first line (naming where the table
    is), False nothing."""
    if how == "summary":
        logger.info("{}: {} (the table: tools/quant_plan.py)".format(method, plan.summary()))
    elif how:
        logger.info("{} plan\n{}".format(method, plan))


def _checkpoint_dir():
    """Where ppdet's Checkpointer writes (save_dir/filename): the report goes beside it."""
    from ppdet.core.workspace import global_config

    return os.path.join(global_config.get("save_dir") or "output",
                        global_config.get("filename") or "model")


@register
@serializable
class ResidualQAT(object):
    """PaddleSlim QAT on conv/linear plus quantizers at residual adds and concats.

    backend: onednn | tensorrt | shared (see docs/residual_qat.md)
    quant_config: PaddleSlim's QAT config keys (weight/activation bits, PACT, ...)
    rules: ordered per-layer / per-join rules, last match wins
    monitor: quantization error monitor during training (see docs/monitor.md), e.g.
        {every_n_steps: 20, threshold_db: 20.0}; null turns it off
    strict: a join of activations that gets no quantizer stops the run (default: a warning)
    """

    def __init__(self, backend="onednn", quant_config=None, rules=None, input_shape=None,
                 print_plan=True, monitor=None, strict=False):
        # Checked now, so a bad setting fails when ppdet builds this object.
        self._setup(parse_slim_settings(QAT_METHOD, dict(
            backend=backend, quant_config=quant_config, rules=rules, input_shape=input_shape,
            print_plan=print_plan, monitor=monitor, strict=strict)))

    @classmethod
    def from_settings(cls, settings):
        """The slim class for SlimSettings already parsed (slimext's own model builder)."""
        slim = cls.__new__(cls)
        slim._setup(settings)
        return slim

    def _setup(self, settings):
        self.settings = settings
        # ppdet's build_slim_model edits this dict for its test mode (PACT off for export).
        self.quant_config = dict(settings.quant.quant_config)
        self.monitor = None
        self.core = None

    @property
    def rules(self):
        return list(self.settings.quant.rules)

    def __call__(self, model, check_coverage=True, print_plan=None):
        """Quantize `model`. check_coverage: trace it for joins interception missed
        (training wants the report; evaluation and export, whose validator checks the
        exported program, do not). print_plan: True (the table), "summary" (one line), False,
        or None for the slim YAML's print_plan."""
        settings = self.settings.quant.replace(
            quant_config=dict(self.quant_config),
            input_shape=self.settings.quant.input_shape or _configured_input_shape())
        self.monitor = monitor_from_config(self.settings.monitor)  # one per quantized model
        if self.monitor is not None:
            self.monitor.default_output_dir = os.path.join(_checkpoint_dir(), "join_monitor")
        self.core = QATQuantizer.from_settings(settings, monitor=self.monitor,
                                               check_coverage=check_coverage)
        model = self.core(model)
        if print_plan is None:
            print_plan = self.settings.print_plan
        if is_main_rank():
            log_plan(logger, "ResidualQAT", self.core.plan, print_plan)
        return model

    @property
    def plan(self):
        return self.core.plan if self.core else None

    def finalize(self):
        """After training: the join error report (also written at exit if not called).

        Rank 0 writes it; the monitor's numbers are already reduced over all ranks.
        """
        return self.core.finalize() if self.core and is_main_rank() else None

    def save_quantized_model(self, layer, path, input_spec=None, **config):
        if not is_main_rank():  # one export per run: the scales are the same on every rank
            return None
        # Traced with every detector input, saved with the ones ppdet kept.
        report = self.core.save_quantized_model(layer, path, input_spec=input_spec,
                                                trace_spec=detector_inputs(input_spec))
        logger.info("ResidualQAT export: {}".format(report))
        return report
