"""Test-only launcher: ``run.py`` with a pause after every training batch, so a test can kill it between checkpoints.

Usage: ``python tests/run_paused.py SECONDS [run.py arguments ...]``.
"""

from __future__ import annotations

import runpy
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

RUN_PY = Path(__file__).resolve().parents[1] / "run.py"


class PauseAfterBatch(pl.Callback):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, *args: Any) -> None:
        time.sleep(self.seconds)


def main() -> None:
    seconds = float(sys.argv.pop(1))
    init = pl.Trainer.__init__

    def paused_init(self: pl.Trainer, *args: Any, callbacks: Any = None, **kwargs: Any) -> None:
        init(self, *args, callbacks=[*(callbacks or []), PauseAfterBatch(seconds)], **kwargs)

    pl.Trainer.__init__ = paused_init  # type: ignore[method-assign]
    sys.argv[0] = str(RUN_PY)
    runpy.run_path(str(RUN_PY), run_name="__main__")


if __name__ == "__main__":
    main()
