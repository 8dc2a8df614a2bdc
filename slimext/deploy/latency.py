"""Latency of a callable: median and p90 over repeated runs after warm-up (for benchmarks too)."""
import statistics
import time
from dataclasses import dataclass


@dataclass
class Latency:
    median_ms: float
    min_ms: float
    max_ms: float
    runs: int
    p90_ms: float = None


def percentile(values, fraction):
    """Linear-interpolated percentile of a non-empty list (fraction in [0, 1])."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def measure_latency(run, runs=25, warmup=5, max_seconds=None, on_run=None):
    """Call run() `warmup` times untimed (oneDNN builds its kernels then), then time `runs`.

    max_seconds stops the timed runs early (after at least 3) so a slow runtime cannot
    stretch a benchmark; on_run() is called after each timed run (a progress bar).
    """
    if runs < 1:
        raise ValueError("runs must be at least 1")
    for _ in range(warmup):
        run()
    times = []
    started = time.perf_counter()
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000.0)
        if on_run is not None:
            on_run()
        if (max_seconds is not None and len(times) >= 3
                and time.perf_counter() - started > max_seconds):
            break
    return latency_of(times)


def latency_of(times_ms):
    """Latency summary of a non-empty list of run times in ms."""
    return Latency(statistics.median(times_ms), min(times_ms), max(times_ms), len(times_ms),
                   percentile(times_ms, 0.9))
