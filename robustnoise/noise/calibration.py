"""Choosing ANT's epsilon for a new dataset or resolution.

Rule (Rusak et al. 2020, App. B and the authors' answer in game-of-noise issue #1): epsilon is the l2 size of
Gaussian noise with std sigma on that data, measured *after* clipping to [0, 1]:
``epsilon(sigma) = E_x || clip(x + sigma * n, 0, 1) - x ||_2``. With sigma = 0.5 this gives about 135 on
224 px ImageNet and about 10 on MNIST (mostly black pixels lose half of their noise to clipping), the two values
the paper uses for ANT 1x1; the unclipped sigma * sqrt(D) would overestimate it (194 on ImageNet). ANT 3x3 uses
70 on ImageNet, 70/135 of the 1x1 value, to offset the 3x3 generator's extra freedom.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from robustnoise.utils.errors import ConfigError

log = logging.getLogger("robustnoise.methods.ant")  # ANT's epsilon=auto

ANT3X3_SCALE = 70.0 / 135.0


def clipped_gaussian_norm(images: Tensor, sigma: float, samples: int = 4, seed: int = 0) -> float:
    """Mean l2 norm of ``clip(x + sigma * n, 0, 1) - x`` over images (N, C, H, W) and ``samples`` noise draws."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    norms = []
    for _ in range(samples):
        noise = torch.randn(images.shape, generator=gen).to(images) * sigma
        norms.append(((images + noise).clamp(0, 1) - images).flatten(1).norm(dim=1))
    return float(torch.cat(norms).mean())


def epsilon_for_sigma(dataset: Dataset, sigma: float = 0.5, scale: float = 1.0, max_images: int = 512) -> float:
    """``scale * clipped_gaussian_norm`` on the first ``max_images`` images of a dataset of ``(image, label)``."""
    n = min(max_images, len(dataset))  # type: ignore[arg-type]
    images = torch.stack([dataset[i][0] for i in range(n)]).float()
    return scale * clipped_gaussian_norm(images, sigma)


def auto_epsilon(trainer: Any, sigma: float, scale: float) -> float:
    """ANT's ``epsilon: auto``: :func:`epsilon_for_sigma` on the training set of ``trainer``'s DataModule."""
    dataset = getattr(trainer.datamodule, "train_set", None) if trainer is not None else None
    if dataset is None:
        raise ConfigError("epsilon=auto needs a DataModule with a train_set; set method.epsilon to a number")
    epsilon = epsilon_for_sigma(dataset, sigma, scale)
    log.info("epsilon=auto: %.3f (clipped l2 of sigma=%.2f Gaussian noise x %.3f)", epsilon, sigma, scale)
    return epsilon
