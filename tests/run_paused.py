"""Test-only launcher: ``run.py`` with a pause after every training batch, so a test can kill it between checkpoints.

Usage: ``python tests/run_paused.py SECONDS [run.py arguments ...]``. With ``RN_TEST_SLOW_SAVE=<seconds>`` in the
environment, every checkpoint file is also written in two halves with that pause in between, so a test can kill the
run in the middle of a write.
"""

from __future__ import annotations

import io
import os
import runpy
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

RUN_PY = Path(__file__).resolve().parents[1] / "run.py"


class PauseAfterBatch(pl.Callback):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, *args: Any) -> None:
        time.sleep(self.seconds)


def slow_save(seconds: float) -> None:
    save = torch.save

    def halves(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(f, io.BytesIO):
            save(obj, f, *args, **kwargs)
            return
        buffer = io.BytesIO()
        save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        out = open(f, "wb") if isinstance(f, (str, os.PathLike)) else f  # noqa: SIM115
        out.write(data[: len(data) // 2])
        out.flush()
        time.sleep(seconds)
        out.write(data[len(data) // 2 :])
        if out is not f:
            out.close()

    torch.save = halves  # type: ignore[assignment]


def main() -> None:
    seconds = float(sys.argv.pop(1))
    if os.environ.get("RN_TEST_SLOW_SAVE"):
        slow_save(float(os.environ["RN_TEST_SLOW_SAVE"]))
    init = pl.Trainer.__init__

    def paused_init(self: pl.Trainer, *args: Any, callbacks: Any = None, **kwargs: Any) -> None:
        init(self, *args, callbacks=[*(callbacks or []), PauseAfterBatch(seconds)], **kwargs)

    pl.Trainer.__init__ = paused_init  # type: ignore[method-assign]
    sys.argv[0] = str(RUN_PY)
    runpy.run_path(str(RUN_PY), run_name="__main__")


if __name__ == "__main__":
    main()
