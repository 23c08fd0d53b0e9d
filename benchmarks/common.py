"""Timing helpers shared by the benchmarks: medians of repeated runs, one thread, plain-text tables."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence


def median_time(
    fn: Callable[[], object], repeats: int = 7, warmup: int = 2, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Median time of ``fn()`` in seconds: wall time, or CPU time with ``clock=time.process_time``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times)


def median_cpu_time(fn: Callable[[], object], repeats: int = 7, warmup: int = 2) -> float:
    """Median CPU time (``time.process_time``, all threads of this process) of ``fn()`` in seconds."""
    return median_time(fn, repeats, warmup, clock=time.process_time)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in header]] + [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
