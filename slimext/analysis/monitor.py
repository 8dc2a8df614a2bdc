"""Quantization error at every join quantizer, sampled while QAT trains.

    monitor = JoinErrorMonitor(every_n_steps=20, threshold_db=20.0)
    monitor.attach(model, qat)          # after model = qat(model, ...)
    ... train ...
    monitor.finalize()                  # CSV / JSON / PNG report, flagged joins warned

Every `every_n_steps` training steps each monitored quantizer reports the error it adds
between its float input x and its fake-quant output q:
SQNR = 10*log10(sum(x^2) / sum((x-q)^2)) dB and relative MSE = sum((x-q)^2) / sum(x^2).
On other steps, and in eval mode, the hooks return at once.
"""
import atexit
from dataclasses import asdict, dataclass, fields
from typing import Optional

import paddle

from slimext.analysis.monitor_output import VisualDLScalars, log_step, monitor_logger
from slimext.analysis.monitor_sums import StepErrorSums
from slimext.distributed import is_main_rank
from slimext.quant.apply import QuantizerObserver

FLAGS_NAMED = 8  # the end-of-run warning names this many flagged quantizers, then counts


class MonitorConfigError(ValueError):
    """The `monitor` settings are wrong; the message names the key and what it accepts."""


@dataclass
class MonitorConfig:
    every_n_steps: int = 20
    threshold_db: float = 20.0
    layers: bool = False
    output_dir: Optional[str] = None
    vdl_log_dir: Optional[str] = None
    recent_samples: int = 5
    log_worst: int = 3

    @classmethod
    def from_dict(cls, raw):
        if not isinstance(raw, dict):
            raise MonitorConfigError(
                "monitor must be a mapping such as {{every_n_steps: 20, threshold_db: 20.0}} "
                "(or true for the defaults, null to turn it off), got {!r}".format(raw))
        valid = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in raw if k not in valid)
        if unknown:
            raise MonitorConfigError("monitor: unknown key(s) {}; valid keys are {}".format(
                ", ".join(unknown), ", ".join(valid)))
        config = cls(**raw)
        config.check()
        return config

    def check(self):
        for key in ("every_n_steps", "recent_samples", "log_worst"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise MonitorConfigError("monitor: {} must be an integer >= 1, got {!r}"
                                         .format(key, value))
        if isinstance(self.threshold_db, bool) or not isinstance(self.threshold_db, (int, float)):
            raise MonitorConfigError("monitor: threshold_db must be a number of dB such as "
                                     "20.0, got {!r}".format(self.threshold_db))
        if not isinstance(self.layers, bool):
            raise MonitorConfigError("monitor: layers must be true or false, got {!r}"
                                     .format(self.layers))
        for key in ("output_dir", "vdl_log_dir"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value):
                raise MonitorConfigError("monitor: {} must be a directory path or null, got {!r}"
                                         .format(key, value))


def parse_monitor_setting(config):
    """The MonitorConfig of a `monitor` setting (true: the defaults); None when it is off."""
    if config is None or config is False:
        return None
    if isinstance(config, MonitorConfig):
        config.check()
        return config
    return MonitorConfig() if config is True else MonitorConfig.from_dict(config)


def monitor_from_config(config):
    """A JoinErrorMonitor for a `monitor` setting or MonitorConfig; None when it is off."""
    if isinstance(config, JoinErrorMonitor):
        return config
    settings = parse_monitor_setting(config)
    return None if settings is None else JoinErrorMonitor(**asdict(settings))


class JoinErrorMonitor(QuantizerObserver):
    """Samples the error of a ResidualQAT model's quantizers; see the module docstring.

    It observes the join quantizers through the handler's observer interface
    (`handler.add_observer`) and the layer quantizers through forward hooks.
    """

    def __init__(self, every_n_steps=20, threshold_db=20.0, layers=False, output_dir=None,
                 vdl_log_dir=None, recent_samples=5, log_worst=3):
        self.config = MonitorConfig(every_n_steps, threshold_db, layers, output_dir,
                                    vdl_log_dir, recent_samples, log_worst)
        self.config.check()
        # Where the report goes when output_dir is not set (the ppdet slim class sets the
        # checkpoint folder here).
        self.default_output_dir = "output/join_monitor"
        self.step = 0
        self.samples = []
        self.kinds = {}            # quantizer name -> "join" | "layer"
        self._sums = StepErrorSums()   # the sampled step's error sums
        self._sampling = False
        self._hooks = []
        self._handler = None
        self._vdl = VisualDLScalars(self.config.vdl_log_dir)
        self._reported = 0

    @property
    def output_dir(self):
        return self.config.output_dir or self.default_output_dir

    def attach(self, model, qat):
        """Start monitoring `model`, quantized by `qat` (a ResidualQAT that has run)."""
        from slimext.quant.quantizers import layer_quantizers

        handler = getattr(qat, "handler", None)
        if handler is None:
            raise ValueError("attach the monitor after quantizing: model = qat(model, ...) "
                             "first, then monitor.attach(model, qat)")
        if any(isinstance(o, JoinErrorMonitor) and o is not self for o in handler.observers):
            raise ValueError("this model already has a join error monitor; detach() it first")
        if self._handler is not None:
            raise ValueError("this monitor is already attached; use one monitor per model")
        handler.add_observer(self)
        self._handler = handler
        self.kinds.update({name: "join" for name in handler.plan.quantizers})
        self._hooks = [model.register_forward_pre_hook(self._start_step),
                       model.register_forward_post_hook(self._end_step)]
        if self.config.layers:
            for name, layer in layer_quantizers(model).items():
                if name.endswith("/input"):
                    self.kinds[name] = "layer"
                    self._hooks.append(layer.register_forward_post_hook(self._layer_hook(name)))
        atexit.register(self._finalize_at_exit)
        return self

    def detach(self):
        """Remove every hook; the collected samples stay for summary() and finalize()."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        if self._handler is not None:
            self._handler.remove_observer(self)
        self._handler = None
        atexit.unregister(self._finalize_at_exit)

    def _start_step(self, model, _inputs):
        self._sums.clear()
        self._sampling = bool(model.training) and self.step % self.config.every_n_steps == 0
        if model.training:
            self.step += 1
        return None

    def _end_step(self, _model, _inputs, _outputs):
        if self._sampling:
            self._sampling = False
            self._record()
        return None

    def _layer_hook(self, name):
        def hook(_layer, inputs, output):
            self.observe(name, inputs[0], output)

        return hook

    def observe(self, name, x, q):
        """Add one quantizer call (float input x, fake-quant output q) to this step's sums."""
        if self._sampling and paddle.in_dynamic_mode():
            self._sums.add(name, x, q)

    def _record(self):
        new = self._sums.samples(self.step, self.kinds)
        if not new:
            return
        self.samples.extend(new)
        log_step(self.step, new, self.config.threshold_db, self.config.log_worst)
        self._vdl.write(self.step, new)

    def summary(self):
        """{quantizer: {kind, samples, last/mean/min/recent SQNR, last rel. MSE, flagged}}."""
        from slimext.analysis.monitor_report import summarize

        return summarize(self.samples, self.kinds, self.config.threshold_db,
                         self.config.recent_samples)

    def finalize(self):
        """Write the report if there are new samples, warn about flagged quantizers.

        Returns {"csv"|"json"|"png": path}, or None when nothing new was sampled.
        """
        from slimext.analysis.monitor_report import write_report

        if not is_main_rank():  # every rank holds the same reduced samples; one report
            return None
        self._vdl.close()
        if len(self.samples) == self._reported:
            return None
        summary = self.summary()
        paths = write_report(self.output_dir, self.samples, summary, asdict(self.config))
        self._reported = len(self.samples)
        flagged = [(n, s) for n, s in summary.items() if s["flagged"]]
        if flagged:
            named = ", ".join("{} {:.1f} dB".format(n, s["recent_max_sqnr_db"])
                              for n, s in flagged[:FLAGS_NAMED])
            more = " and {} more".format(len(flagged) - FLAGS_NAMED) \
                if len(flagged) > FLAGS_NAMED else ""
            monitor_logger().warning(
                "join monitor: {} quantizer(s) stayed below {:g} dB SQNR over their last {} "
                "samples: {}{}; give them more bits (rule activation_bits: 16) or skip them; "
                "all numbers in {}".format(len(flagged), self.config.threshold_db,
                                           self.config.recent_samples, named, more, paths["json"]))
        monitor_logger().info("join monitor report: {}".format(", ".join(paths.values())))
        return paths

    def _finalize_at_exit(self):
        try:
            self.finalize()
        except Exception as error:  # a report failure must not mask the run's own outcome
            monitor_logger().error("join monitor: could not write the report: {}".format(error))
