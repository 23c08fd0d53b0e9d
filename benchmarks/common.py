"""Timing helpers shared by the benchmarks: common options, interleaved repetitions, CPU time, plain-text tables.

Every benchmark takes ``--device cpu|cuda``, ``--precision 32|bf16-mixed``, ``--threads`` and ``--repeats``. On CPU
the work is timed in process CPU time (``time.process_time``: immune to other processes on a shared machine; with
``--threads`` > 1 it sums the threads, so it reads as core-seconds); on CUDA in wall time with the device
synchronised (``torch.utils.benchmark.Timer`` does both). Repetitions of the variants being compared are interleaved
(A, B, A, B, ...), so that a change of machine load hits all of them alike, and the median is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
from torch.utils.benchmark import Timer


def parser(doc: str | None, repeats: int = 5) -> argparse.ArgumentParser:
    """An argument parser with the common options; the description is the first line of ``doc``."""
    p = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--precision", choices=["32", "bf16-mixed"], default="32", help="as Lightning's trainer.precision")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--repeats", type=int, default=repeats, help="timed repetitions of each variant (interleaved)")
    return p


def configure(args: argparse.Namespace) -> torch.device:
    """Apply ``--threads``, check ``--device`` and return it."""
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but no CUDA device is available")
    return torch.device(args.device)


def autocast(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``--precision bf16-mixed`` (what Lightning's bf16-mixed plugin wraps each step in)."""
    if args.precision == "bf16-mixed":
        return torch.autocast(args.device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def interleaved(
    fns: Mapping[str, Callable[[], object]], device: torch.device, repeats: int = 5, warmup: int = 1
) -> dict[str, float]:
    """Median seconds per call of each function, repetitions interleaved; CPU time on CPU, synchronised wall time
    on CUDA."""
    clock = {"timer": time.process_time} if device.type == "cpu" else {}
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(Timer("fn()", globals={"fn": fn}, **clock).timeit(1).median)
    return {name: statistics.median(t) for name, t in times.items()}


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """No Lightning banners and tips while the benchmarks build their modules."""
    import logging
    import warnings

    loggers = [logging.getLogger(n) for n in ("pytorch_lightning", "lightning", "lightning.pytorch")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in header]] + [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
