"""ANT's epsilon for a new dataset (Rusak et al. 2020, App. B; game-of-noise issue #1): ``E_x ||clip(x + sigma n, 0, 1)
- x||_2``; sigma = 0.5 gives the paper's ANT 1x1 values, ~135 on ImageNet (unclipped: 194) and 10 on MNIST."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch.utils.data import Dataset

from robustnoise.utils.errors import ConfigError

log = logging.getLogger("robustnoise.methods.ant")  # ANT's epsilon=auto


def epsilon_for_sigma(dataset: Dataset, sigma: float = 0.5, scale: float = 1.0, max_images: int = 512) -> float:
    """``scale`` x the mean clipped l2 norm of sigma-Gaussian noise on the first ``max_images`` images (4 draws)."""
    images = torch.stack([dataset[i][0] for i in range(min(max_images, len(dataset)))]).float()  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(0)
    noise = [torch.randn(images.shape, generator=gen).to(images) * sigma for _ in range(4)]
    return scale * float(torch.cat([((images + n).clamp(0, 1) - images).flatten(1).norm(dim=1) for n in noise]).mean())


def auto_epsilon(trainer: Any, sigma: float, scale: float) -> float:
    """ANT's ``epsilon: auto``: :func:`epsilon_for_sigma` on the training set of ``trainer``'s DataModule."""
    dataset = getattr(trainer.datamodule, "train_set", None) if trainer is not None else None
    if dataset is None:
        raise ConfigError("epsilon=auto needs a DataModule with a train_set; set method.epsilon to a number")
    epsilon = epsilon_for_sigma(dataset, sigma, scale)
    log.info("epsilon=auto: %.3f (clipped l2 of sigma=%.2f Gaussian noise x %.3f)", epsilon, sigma, scale)
    return epsilon
