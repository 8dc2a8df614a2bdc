"""`slim: ResidualQAT` for ppdet slim YAML (used by tools/train.py, eval.py, export_model.py)."""
import os

from ppdet.core.workspace import register, serializable
from ppdet.utils.logger import setup_logger

from slimext.analysis.monitor import monitor_from_config
from slimext.quant.qat import QATQuantizer
from slimext.distributed import is_main_rank
from slimext.quant.settings import check_quant_config

logger = setup_logger(__name__)

# Set (True) in ppdet's global config by tools that only evaluate or export a trained model:
# they skip the build-time coverage trace (evaluation needs no report, and the export
# validator checks the exported program itself).
SKIP_BUILD_COVERAGE = "slimext_skip_build_coverage"


def _coverage_on_build():
    from ppdet.core.workspace import global_config

    return global_config.get(SKIP_BUILD_COVERAGE) is not True


def _configured_input_shape():
    """The TestReader's image shape, the deploy shape used to discover the joins."""
    from ppdet.core.workspace import global_config

    shape = (global_config.get("TestReader", {}).get("inputs_def", {}) or {}).get("image_shape")
    if shape and len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape[1:]):
        return [1] + list(shape[1:])
    return [1, 3, 320, 320]


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
        self.backend = backend
        self.quant_config = check_quant_config(quant_config)
        self.rules = rules or []
        self.strict = strict
        self.input_shape = input_shape
        self.print_plan = print_plan
        monitor_from_config(monitor)  # a bad setting fails when ppdet builds this object
        self.monitor_config = monitor
        self.monitor = None
        self.core = None

    def __call__(self, model):
        self.monitor = monitor_from_config(self.monitor_config)  # one per quantized model
        if self.monitor is not None:
            self.monitor.default_output_dir = os.path.join(_checkpoint_dir(), "join_monitor")
        self.core = QATQuantizer(backend=self.backend, quant_config=self.quant_config,
                                     rules=self.rules,
                                     input_shape=self.input_shape or _configured_input_shape(),
                                     monitor=self.monitor, strict=self.strict,
                                     check_coverage=_coverage_on_build())
        model = self.core(model)
        if self.print_plan and is_main_rank():
            logger.info("ResidualQAT plan\n{}".format(self.core.plan))
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
        report = self.core.save_quantized_model(layer, path, input_spec=input_spec)
        logger.info("ResidualQAT export: {}".format(report))
        return report
