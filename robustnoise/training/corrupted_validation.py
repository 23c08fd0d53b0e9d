"""-C accuracy over training (Calian et al. 2021, Fig. 2): a fixed, seeded -C subset of the validation split."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor

from robustnoise.corruptions import corrupt, presets
from robustnoise.corruptions.transforms import image_seeds
from robustnoise.utils.errors import ConfigError


def default_corruptions(corruptions: Sequence[str], preset: str) -> list[str]:
    """At most 4 corruptions spread over the list (its families), or over the preset's benchmark list if it is empty."""
    mnistc = preset == presets.MNISTC_PRESET
    names = list(corruptions) or list(presets.MNIST_C_CORRUPTIONS if mnistc else presets.BENCHMARK_CORRUPTIONS)
    return names[:: math.ceil(len(names) / 4)]


class CorruptedValidation(Callback):
    """Logs ``val_c/<corruption>/acc`` (mean over the severities) and ``val_c/mean_acc`` (percent) on the first
    ``max_images`` validation images, corrupted once (uint8) with the final evaluation's per-image seeds."""

    def __init__(
        self, every_n_epochs: int, corruptions: Sequence[str], severities: Sequence[int], preset: str, max_images: int,
        seed: int = 0, batch_size: int = 256,
    ) -> None:  # fmt: skip
        if not (isinstance(every_n_epochs, int) and every_n_epochs >= 0) or int(max_images) < 1:
            raise ConfigError("eval.during_training: every_n_epochs must be >= 0 and max_images >= 1")
        self.names = [presets.check_corruption(c, preset) for c in corruptions]
        self.sets = [(c, presets.check_severity(s)) for c in self.names for s in severities]
        self.every_n_epochs, self.preset, self.max_images = every_n_epochs, preset, int(max_images)
        self.seed, self.batch_size = int(seed), int(batch_size)
        self.images: Tensor | None = None  # (sets, N, C, H, W) uint8
        self.labels: Tensor | None = None

    def build(self, dataset: Any) -> None:
        """Corrupt the first ``max_images`` items of ``dataset`` (``(image, label, ...)``) once."""
        n = min(self.max_images, len(dataset))
        x = torch.stack([dataset[i][0] for i in range(n)])
        self.labels = torch.as_tensor([int(dataset[i][1]) for i in range(n)])
        corrupted = [corrupt(x, c, s, self.preset, image_seeds(self.seed, torch.arange(n), c, s)) for c, s in self.sets]
        self.images = torch.stack(corrupted).mul(255).round_().to(torch.uint8)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and self.images is None:
            trainer.datamodule.setup("fit")
            self.build(trainer.datamodule.val_set)

    @torch.no_grad()
    def accuracies(self, model: torch.nn.Module, device: torch.device, rank: int = 0, world: int = 1) -> Tensor:
        """Correct counts per set of this rank's share (images ``rank::world``), as float (sets,)."""
        share = torch.arange(rank, self.images.shape[1], world)
        correct = torch.zeros(len(self.sets), device=device)
        for k in range(len(self.sets)):
            for batch in share.split(self.batch_size):
                x = self.images[k, batch].to(device).float().div_(255.0)
                correct[k] += (model(x).argmax(dim=1) == self.labels[batch].to(device)).sum()
        return correct

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        due = self.every_n_epochs > 0 and (trainer.current_epoch + 1) % self.every_n_epochs == 0
        if trainer.sanity_checking or not due or self.images is None:
            return
        correct = self.accuracies(pl_module.classifier, pl_module.device, trainer.global_rank, trainer.world_size)
        if trainer.world_size > 1:
            correct = trainer.strategy.reduce(correct, reduce_op="sum")
        acc = (100.0 * correct.double() / self.images.shape[1]).view(len(self.names), -1).mean(1).tolist()
        metrics = {f"val_c/{name}/acc": value for name, value in zip(self.names, acc)}
        metrics["val_c/mean_acc"] = sum(acc) / len(acc)
        # equal on every rank already; sync_dist keeps Lightning's epoch-level DDP logging check satisfied
        pl_module.log_dict(metrics, on_epoch=True, sync_dist=True)


def corrupted_validation(cfg: Any, eval_cfg: Any, batch_size: int, preset: str) -> CorruptedValidation | None:
    """The callback of ``eval.during_training`` (None when off); default severity: the evaluation's middle one."""
    if not cfg or not cfg.get("every_n_epochs"):
        return None
    corruptions = cfg.get("corruptions") or default_corruptions(eval_cfg.corruptions, preset)
    available = sorted(eval_cfg.severities or [3])
    severities = cfg.get("severities") or [available[len(available) // 2]]
    return CorruptedValidation(
        cfg.every_n_epochs, list(corruptions), list(severities), preset, cfg.max_images, eval_cfg.seed, batch_size
    )
