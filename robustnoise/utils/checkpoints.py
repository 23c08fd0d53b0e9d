"""Checkpoint callbacks and atomic checkpoint files."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from fsspec.implementations.local import LocalFileSystem
from lightning_fabric.utilities.cloud_io import get_filesystem
from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.callbacks import Checkpoint, ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.trainer.states import TrainerFn

from robustnoise.utils.errors import RobustnoiseError

TEMP_MARK = ".tmp-"  # ``.<name>.tmp-<pid>-<hex>``: a checkpoint being written next to its target


class OnExceptionCheckpoint(Checkpoint):
    """``<dirpath>/<filename>.ckpt`` when training stops on an exception after the first step (not a user error). Not
    Lightning's: that one makes ``fit(ckpt_path=None)`` resume silently; here only ``resume=true`` resumes."""

    def __init__(self, dirpath: _PATH, filename: str = "on_exception") -> None:
        super().__init__()
        self.ckpt_path = os.path.join(dirpath, f"{filename}.ckpt")

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if trainer.global_step > 0 and not isinstance(exception, RobustnoiseError):
            trainer.save_checkpoint(self.ckpt_path)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temporary file next to the target, fsync, ``os.replace``: the previous file stays complete
    until the new one is; the next write removes killed writes' debris (rank zero is the only writer)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)  # remote storage: Lightning's writer
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in target.parent.glob(f".*.ckpt{TEMP_MARK}*"):  # one writer per run directory: others are debris
            stale.unlink(missing_ok=True)
        tmp = target.with_name(f".{target.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # the rename survives a power loss (not on every filesystem)
            fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


class LastCheckpoint(Checkpoint):
    """``last.ckpt`` after every epoch and ``every_n_train_steps`` steps (exact resume), never before step 1 or twice
    at one step (``save_last`` writes only with a top-k checkpoint)."""

    def __init__(self, dirpath: _PATH, every_n_train_steps: int = 0) -> None:
        super().__init__()
        self.path = os.path.join(dirpath, f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}{ModelCheckpoint.FILE_EXTENSION}")
        self.every_n_train_steps = every_n_train_steps
        self.saved_step = 0

    def _save(self, trainer: pl.Trainer) -> None:
        if trainer.fast_dev_run or trainer.state.fn != TrainerFn.FITTING or trainer.global_step == self.saved_step:
            return
        trainer.save_checkpoint(self.path, weights_only=False)  # explicit: else Lightning logs its default each save
        self.saved_step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if self.every_n_train_steps > 0 and trainer.global_step % self.every_n_train_steps == 0:
            self._save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)
