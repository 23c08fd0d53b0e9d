"""Corrupted-validation accuracy during training: a fixed, seeded -C subset of the validation split, evaluated every N
epochs inside the validation loop (Calian et al. 2021, "Defending against image corruptions through adversarial
augmentations", Fig. 2: -C accuracy over training)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor

from robustnoise.corruptions import corrupt
from robustnoise.corruptions.presets import (
    BENCHMARK_CORRUPTIONS,
    MNIST_C_CORRUPTIONS,
    MNISTC_PRESET,
    check_corruption,
    check_severity,
)
from robustnoise.corruptions.transforms import image_seeds
from robustnoise.utils.errors import ConfigError

MAX_DEFAULT_CORRUPTIONS = 4


def default_corruptions(corruptions: Sequence[str], preset: str) -> list[str]:
    """At most 4 corruptions spread over the list (its families: noise, blur, weather, digital), or over the preset's
    benchmark list when ``corruptions`` is empty (a released -C evaluation)."""
    names = list(corruptions) or list(MNIST_C_CORRUPTIONS if preset == MNISTC_PRESET else BENCHMARK_CORRUPTIONS)
    return names[:: math.ceil(len(names) / MAX_DEFAULT_CORRUPTIONS)]


class CorruptedValidation(Callback):
    """Logs ``val_c/<corruption>/acc`` (mean over the severities) and ``val_c/mean_acc`` every ``every_n_epochs``.

    The subset (the first ``max_images`` validation images, each corrupted with the per-image seed of its index, on
    the 8-bit grid as the final evaluation) is built once and kept as uint8: identical in every epoch and on every
    rank. Each rank evaluates its share of it; the correct counts are summed over ranks. Accuracies are in percent, as
    ``val/acc``.
    """

    def __init__(
        self, every_n_epochs: int, corruptions: Sequence[str], severities: Sequence[int], preset: str, max_images: int,
        seed: int = 0, batch_size: int = 256,
    ) -> None:  # fmt: skip
        if not (isinstance(every_n_epochs, int) and every_n_epochs >= 0):
            raise ConfigError(f"eval.during_training.every_n_epochs must be an integer >= 0, got {every_n_epochs!r}")
        if not corruptions or not severities:
            raise ConfigError("eval.during_training needs at least one corruption and one severity")
        if int(max_images) < 1:
            raise ConfigError(f"eval.during_training.max_images must be >= 1, got {max_images}")
        self.sets = [(check_corruption(c, preset), check_severity(s)) for c in corruptions for s in severities]
        self.every_n_epochs, self.preset, self.max_images = int(every_n_epochs), preset, int(max_images)
        self.seed, self.batch_size = int(seed), int(batch_size)
        self.images: Tensor | None = None  # (sets, N, C, H, W) uint8
        self.labels: Tensor | None = None

    def build(self, dataset: Any) -> None:
        """Corrupt the first ``max_images`` items of ``dataset`` (``(image, label, ...)``) once."""
        n = min(self.max_images, len(dataset))
        items = [dataset[i] for i in range(n)]
        x = torch.stack([item[0] for item in items])
        self.labels = torch.as_tensor([int(item[1]) for item in items])
        seeds = lambda c, s: image_seeds(self.seed, torch.arange(n), c, s)  # noqa: E731
        corrupted = [corrupt(x, c, s, self.preset, seeds(c, s)).mul(255).round_() for c, s in self.sets]
        self.images = torch.stack(corrupted).to(torch.uint8)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and self.images is None:
            trainer.datamodule.setup("fit")
            self.build(trainer.datamodule.val_set)

    def due(self, epoch: int) -> bool:
        return self.every_n_epochs > 0 and (epoch + 1) % self.every_n_epochs == 0

    @torch.no_grad()
    def accuracies(self, model: torch.nn.Module, device: torch.device, rank: int = 0, world: int = 1) -> Tensor:
        """Correct counts per set of this rank's share (images ``rank::world``), as float (sets,)."""
        assert self.images is not None and self.labels is not None
        share = torch.arange(rank, self.images.shape[1], world)
        correct = torch.zeros(len(self.sets), device=device)
        for k in range(len(self.sets)):
            for batch in share.split(self.batch_size):
                x = self.images[k, batch].to(device).float().div_(255.0)
                correct[k] += (model(x).argmax(dim=1) == self.labels[batch].to(device)).sum()
        return correct

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self.due(trainer.current_epoch) or self.images is None:
            return
        correct = self.accuracies(pl_module.classifier, pl_module.device, trainer.global_rank, trainer.world_size)
        if trainer.world_size > 1:
            correct = trainer.strategy.reduce(correct, reduce_op="sum")
        acc = (100.0 * correct / self.images.shape[1]).cpu()  # percent, as val/acc
        per_corruption: dict[str, list[float]] = {}
        for (name, _), value in zip(self.sets, acc.tolist()):
            per_corruption.setdefault(name, []).append(value)
        metrics = {f"val_c/{name}/acc": sum(v) / len(v) for name, v in per_corruption.items()}
        metrics["val_c/mean_acc"] = sum(metrics.values()) / len(metrics)
        # identical on every rank already (counts summed above); sync_dist averages equal values and keeps Lightning's
        # epoch-level DDP logging check satisfied
        pl_module.log_dict(metrics, on_epoch=True, sync_dist=True)


def corrupted_validation(cfg: Any, eval_cfg: Any, batch_size: int, preset: str) -> CorruptedValidation | None:
    """The callback from ``eval.during_training`` (None when ``every_n_epochs`` is 0 or null), corrupting with the
    final evaluation's ``preset``."""
    if not cfg or not cfg.get("every_n_epochs"):
        return None
    corruptions = cfg.get("corruptions") or default_corruptions(eval_cfg.corruptions, preset)
    available = sorted(eval_cfg.severities or [3])
    severities = cfg.get("severities") or [available[len(available) // 2]]  # the middle severity
    return CorruptedValidation(
        cfg.every_n_epochs, list(corruptions), list(severities), preset, cfg.max_images, eval_cfg.seed, batch_size
    )
