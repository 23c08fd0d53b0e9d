"""Progress of long inner phases (ANT restarts, noise generators, eps*) on rank zero: a tqdm bar on a terminal, else a
log line every tenth of the phase; only after ``QUIET_SECONDS``."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TypeVar

log = logging.getLogger("robustnoise.progress")

T = TypeVar("T")

QUIET_SECONDS = float(os.environ.get("ROBUSTNOISE_PROGRESS_QUIET", 3.0))  # shorter phases print nothing


def progress(items: Sequence[T], name: str) -> Iterator[T]:
    """Iterate ``items`` showing the progress of the phase ``name`` (see the module docstring)."""
    if any(int(os.environ.get(key, 0) or 0) for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID")):  # not rank zero
        yield from items
        return
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        yield from tqdm(items, desc=name, delay=QUIET_SECONDS, leave=False, dynamic_ncols=True)
        return
    start = time.monotonic()
    every = max(1, len(items) // 10)
    for step, item in enumerate(items, 1):
        yield item
        elapsed = time.monotonic() - start
        if elapsed >= QUIET_SECONDS and (step % every == 0 or step == len(items)):
            log.info("%s: %d/%d (%.0f s)", name, step, len(items), elapsed)
