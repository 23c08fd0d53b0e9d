"""The non-finite-loss guard: a training step stops before a nan or inf loss reaches the weights."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import Tensor

from robustnoise.utils.checkpoints import last_checkpoint
from robustnoise.utils.errors import NonFiniteLossError


def check_finite_loss(module: pl.LightningModule, loss: Tensor) -> None:
    """Raise :class:`NonFiniteLossError` (naming the step and the last good checkpoint) if ``loss`` is not finite on
    any rank; every rank stops together (one flag all-reduced)."""
    if module._trainer is None:
        return
    trainer = module.trainer
    bad = (~torch.isfinite(loss.detach())).any().float()
    if trainer.world_size > 1:
        bad = trainer.strategy.reduce(bad, reduce_op="sum")
    if float(bad) > 0:
        raise NonFiniteLossError(
            f"non-finite training loss ({float(loss.detach().float().sum())}) at step {module.global_step} "
            f"(epoch {module.current_epoch}); last good checkpoint: {last_checkpoint(trainer) or 'none written'}"
        )
