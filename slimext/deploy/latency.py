"""Latency of a callable: median over repeated runs after warm-up (for benchmarks too)."""
import statistics
import time
from dataclasses import dataclass


@dataclass
class Latency:
    median_ms: float
    min_ms: float
    max_ms: float
    runs: int


def measure_latency(run, runs=25, warmup=5):
    """Call run() `warmup` times untimed (oneDNN builds its kernels then), then time `runs`."""
    if runs < 1:
        raise ValueError("runs must be at least 1")
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000.0)
    return Latency(statistics.median(times), min(times), max(times), runs)
