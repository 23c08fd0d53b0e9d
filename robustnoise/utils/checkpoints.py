"""Checkpoint helpers: the newest checkpoint of a run, and an on-exception checkpoint that never saves a NaN state."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.callbacks import OnExceptionCheckpoint as _OnExceptionCheckpoint

from robustnoise.utils.errors import NonFiniteLossError

# Our mid-epoch checkpoints are written after the step on purpose: together with the loop counters that is exactly
# the state an exact resume needs.
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization and every_n_train_steps")


def last_checkpoint(trainer: pl.Trainer) -> str | None:
    """The newest ``last``/best checkpoint the trainer's ModelCheckpoint callbacks have written (None if none)."""
    candidates: set[Path] = set()
    for callback in trainer.callbacks:  # type: ignore[attr-defined]
        if not isinstance(callback, ModelCheckpoint):
            continue
        for path in (callback.last_model_path, callback.best_model_path):
            if path:
                candidates.add(Path(path))
        if callback.dirpath:
            candidates.add(Path(callback.dirpath) / f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}.ckpt")
    existing = [p for p in candidates if p.is_file()]
    return str(max(existing, key=lambda p: p.stat().st_mtime)) if existing else None


class OnExceptionCheckpoint(_OnExceptionCheckpoint):
    """Lightning's checkpoint-on-exception, except for a non-finite loss: that state is not worth resuming from, and
    ``ckpt_path=last`` would pick it over the last good ``last.ckpt``."""

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, NonFiniteLossError):
            return
        super().on_exception(trainer, pl_module, exception)


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt`` at the end of every epoch and every ``every_n_train_steps`` optimiser steps (exact resume after a
    kill, also mid-epoch).

    Lightning's own ``save_last`` writes only when a top-k checkpoint was saved in the same step (when the monitored
    metric improved) and again after the loop has finished; this one writes every epoch, and nothing at the end of
    training (the final epoch's ``last.ckpt`` is the final state).
    """

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._should_skip_saving_checkpoint(trainer) and self._should_save_on_train_epoch_end(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._should_skip_saving_checkpoint(trainer) and not self._should_save_on_train_epoch_end(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        return
