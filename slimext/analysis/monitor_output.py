"""Where the join error monitor's numbers go while training: a log line per sampled step
and, when asked, VisualDL scalars (rank 0 only)."""
import math

from slimext.distributed import is_main_rank


def monitor_logger():
    """ppdet's logger (its log format); ppdet is imported on the first message only, so
    importing the monitor loads nothing of ppdet."""
    from ppdet.utils.logger import setup_logger

    return setup_logger("slimext.analysis.monitor")


def log_step(step, samples, threshold_db, log_worst):
    worst = sorted(samples,
                   key=lambda s: s.sqnr_db if math.isfinite(s.sqnr_db) else -math.inf)
    worst = worst[:log_worst]
    below = sum(s.sqnr_db < threshold_db for s in samples)
    monitor_logger().info("join monitor step {}: worst SQNR {}; {} quantizers, {} below {:g} dB"
                          .format(step, ", ".join("{} {:.1f} dB".format(s.quantizer, s.sqnr_db)
                                                  for s in worst),
                                  len(samples), below, threshold_db))


class VisualDLScalars:
    """join_monitor/sqnr_db/<quantizer> scalars in vdl_log_dir; a warning (once) and
    nothing else when visualdl is not installed."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self._writer = None   # None: not opened yet; False: visualdl missing

    def write(self, step, samples):
        if self.log_dir is None or not is_main_rank():
            return
        if self._writer is None:
            try:
                from visualdl import LogWriter
            except ImportError:
                monitor_logger().warning(
                    "join monitor: vdl_log_dir is set but the visualdl package is not "
                    "installed (pip install visualdl); the CSV report has the same numbers")
                self._writer = False
                return
            self._writer = LogWriter(logdir=self.log_dir)
        if self._writer is False:
            return
        for sample in samples:
            self._writer.add_scalar(tag="join_monitor/sqnr_db/" + sample.quantizer,
                                    value=sample.sqnr_db, step=step)

    def close(self):
        if self._writer:
            self._writer.close()
            self._writer = None
