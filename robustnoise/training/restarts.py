"""ANT's restart schedule (with a warning when it is too short) and its experience-replay pool (Rusak et al. §3.2)."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

log = logging.getLogger("robustnoise.methods.ant")  # the warning is ANT's

MIN_TRAINED_RESTARTS = 2  # against a classifier that has learnt: after epoch 1 from scratch, any from weights (papers)


def restart_schedule_warning(interval: int, per_epoch: int, max_epochs: int, pretrained: bool) -> str | None:
    """What to change when ``max_epochs`` leaves fewer than :data:`MIN_TRAINED_RESTARTS` such restarts; else None."""
    first = 0 if pretrained else per_epoch  # iterations before a restart counts

    def trained(iterations: int) -> int:
        return sum(1 for it in range(interval, iterations, interval) if it >= first)

    if (count := trained(max_epochs * per_epoch)) >= MIN_TRAINED_RESTARTS:
        return None
    needed = next(e for e in itertools.count(max_epochs) if trained(e * per_epoch) >= MIN_TRAINED_RESTARTS)
    return (
        f"ANT: trainer.max_epochs={max_epochs} with a restart every {interval / per_epoch:g} epochs ({interval} "
        f"iterations) gives {count} generator restart(s) against a classifier that has trained "
        f"{'at all' if pretrained else 'an epoch'}; the recipe needs >= {MIN_TRAINED_RESTARTS} (otherwise the replayed "
        f"generators were trained against an untrained classifier and ANT can end below vanilla): use "
        f"trainer.max_epochs>={needed} or a smaller method.restart_every"
    )


def restart_interval(trainer: pl.Trainer, every: float, unit: str, pretrained: bool) -> int:
    """Iterations between restarts: ``every`` steps or epochs; warns when too few."""
    per_epoch, epochs = int(trainer.num_training_batches), trainer.max_epochs  # every training loader has a length
    interval = max(1, int(every)) if unit == "step" else max(1, round(every * per_epoch))
    warn = trainer.is_global_zero and epochs and epochs > 0
    if warn and (message := restart_schedule_warning(interval, per_epoch, epochs, pretrained)):
        log.warning("%s", message)
    return interval


class ReplayPool(list):
    """Snapshots ``{"params", "epsilon", "restart", "kind"}``, oldest first, at most ``size`` (None: all, as the
    reference); a resume stream of ``robustnoise.training.exact_resume`` (a plain list: ``weights_only`` safe)."""

    def __init__(self, size: int | None) -> None:
        super().__init__()
        self.size = size

    def add(self, generator: nn.Module, epsilon: float, restart: int, kind: str) -> None:
        # kept on the training device: the replay step reads two snapshots every iteration
        params = {k: v.detach().clone() for k, v in generator.named_parameters()}
        self.append({"params": params, "epsilon": epsilon, "restart": restart, "kind": kind})
        if self.size is not None and len(self) > self.size:
            self.pop(0)

    def draw(self, k: int, device: torch.device) -> list[dict[str, Any]]:
        """``k`` distinct random snapshots, parameters moved to ``device`` once (a resumed pool is on the CPU)."""
        picks = torch.randperm(len(self))[:k].tolist()
        for pick in picks:
            self[pick]["params"] = {name: v.to(device) for name, v in self[pick]["params"].items()}
        return [self[pick] for pick in picks]

    def state_dict(self) -> list[dict[str, Any]]:
        return list(self)

    def load_state_dict(self, state: list[dict[str, Any]]) -> None:
        self[:] = state
