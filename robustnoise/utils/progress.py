"""Progress of long inner phases (ANT restarts, noise generators, eps*) on rank zero: a tqdm bar on a terminal, else a
log line every tenth of the phase; only after ``QUIET_SECONDS``."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

log = logging.getLogger("robustnoise.progress")

T = TypeVar("T")

QUIET_SECONDS = float(os.environ.get("ROBUSTNOISE_PROGRESS_QUIET", 3.0))  # shorter phases print nothing


def progress(iterable: Iterable[T], name: str, total: int | None = None) -> Iterator[T]:
    """Iterate ``iterable`` showing the progress of the phase ``name`` (see the module docstring)."""
    if total is None:
        total = len(iterable) if hasattr(iterable, "__len__") else None  # type: ignore[arg-type]
    if any(int(os.environ.get(key, 0) or 0) for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID")):  # not rank zero
        yield from iterable
        return
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        yield from tqdm(iterable, desc=name, total=total, delay=QUIET_SECONDS, leave=False, dynamic_ncols=True)
        return
    start = time.monotonic()
    every = max(1, (total or 10) // 10)
    for step, item in enumerate(iterable, 1):
        yield item
        elapsed = time.monotonic() - start
        if elapsed >= QUIET_SECONDS and (step % every == 0 or step == total):
            log.info("%s: %d/%s (%.0f s)", name, step, total if total is not None else "?", elapsed)
