"""Gaussian noise training, GNT (Rusak et al. 2020, §3.1 and App. B).

Objective: E[CE(f(clip(x + delta)), y)] with delta ~ N(0, sigma^2 I), in [0, 1] pixel space and before the
normalisation inside the model. As in the paper (and the authors' code), only part of every batch is perturbed: the
first ``round(B * p_clean)`` images stay clean (default half), the rest get noise. "GNT mult" draws sigma per image
uniformly from a set (default: the five ImageNet-C gaussian_noise severities).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from robustnoise.methods.base import RobustClassifierModule
from robustnoise.utils.errors import ConfigError, is_number


def per_image_choice(values: Sequence[float], n: int, like: Tensor) -> Tensor:
    """Draw one of ``values`` uniformly for each of ``n`` images, shaped (n, 1, 1, 1) for broadcasting."""
    table = torch.as_tensor(list(values), dtype=like.dtype, device=like.device)
    pick = torch.randint(len(table), (n,), device=like.device)
    return table[pick].view(n, *([1] * (like.dim() - 1)))


NOISE_LEVEL_MAX = 2.0
"""Largest accepted sigma / speckle c. Images are in [0, 1]: after clipping, Gaussian noise of sigma 2 keeps about 20 %
of the black-to-white contrast (sigma 10: 4 %), so larger values train on noise alone; the papers use <= 0.6."""


def noise_levels(value: float | Sequence[float], name: str) -> list[float]:
    """A noise level or a set of them as a non-empty list of floats in [0, NOISE_LEVEL_MAX] (config validation).

    Only numbers and lists of numbers are accepted: a string such as ``'12'`` is refused rather than read as the
    characters ``'1', '2'``.
    """
    values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    if not values or not all(is_number(v) for v in values):
        raise ConfigError(f"{name} must be a number or a non-empty list of numbers, got {value!r}")
    levels = [float(v) for v in values]
    if not all(0.0 <= v <= NOISE_LEVEL_MAX for v in levels):  # also refuses nan and inf
        raise ConfigError(
            f"{name} must be >= 0 and <= {NOISE_LEVEL_MAX:g}, got {value!r} (images are in [0, 1]: above "
            f"{NOISE_LEVEL_MAX:g} the clipped noise keeps < 20 % of the image contrast)"
        )
    return levels


def gaussian_noise(x: Tensor, sigma: Tensor | float) -> Tensor:
    """``clip(x + sigma * n, 0, 1)``, n ~ N(0, I); ``sigma`` a number or per-image (n, 1, 1, 1)."""
    return (x + torch.randn_like(x) * sigma).clamp_(0.0, 1.0)


class GaussianNoiseTraining(RobustClassifierModule):
    """GNT with a single sigma (default 0.5) or sigma drawn per image from a list (``gnt_mult``)."""

    def __init__(self, *, sigma: float | Sequence[float], **kwargs: Any) -> None:
        sigmas = noise_levels(sigma, "sigma")
        super().__init__(**kwargs)
        self.save_hyperparameters("sigma")
        self.sigmas = sigmas

    def perturb_batch(self, x: Tensor, y: Tensor) -> Tensor:
        start = self.num_clean(len(x))
        noisy = x[start:]
        sigma = self.sigmas[0] if len(self.sigmas) == 1 else per_image_choice(self.sigmas, len(noisy), noisy)
        return torch.cat([x[:start], gaussian_noise(noisy, sigma)])
