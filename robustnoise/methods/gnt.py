"""Noise training: Gaussian (GNT, Rusak et al. 2020, §3.1 and App. B) and speckle noise (§4).

Objective: E[CE(f(clip(x + delta)), y)] with delta ~ N(0, sigma^2 I) (GNT) or delta = x * n * c, n ~ N(0, I)
(speckle), in [0, 1] pixel space, before the model's normalisation. As the paper (and the authors' code), the first
``round(B * p_clean)`` images stay clean (default half). "GNT mult" and speckle draw the level per image from a set
(default: the ImageNet-C gaussian_noise / speckle_noise severities).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from robustnoise.methods.base import RobustClassifierModule
from robustnoise.utils.errors import ConfigError, is_number

NOISE_LEVEL_MAX = 2.0  # images in [0, 1]: clipped noise of sigma 2 keeps ~20 % of the contrast; the papers use <= 0.6


def noise_levels(value: float | Sequence[float], name: str) -> list[float]:
    """A noise level or a set of them as a non-empty list of floats in [0, NOISE_LEVEL_MAX] (config validation; a
    string such as ``'12'`` is refused rather than read as the characters ``'1', '2'``)."""
    values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    if not values or not all(is_number(v) for v in values):
        raise ConfigError(f"{name} must be a number or a non-empty list of numbers, got {value!r}")
    if not all(0.0 <= v <= NOISE_LEVEL_MAX for v in values):  # also refuses nan and inf
        raise ConfigError(
            f"{name} must be >= 0 and <= {NOISE_LEVEL_MAX:g}, got {value!r} (images are in [0, 1]: above "
            f"{NOISE_LEVEL_MAX:g} the clipped noise keeps < 20 % of the image contrast)"
        )
    return [float(v) for v in values]


NOISES = {  # the config key of the level, and the noise (the level a number or per image (n, 1, 1, 1))
    "gaussian": ("sigma", lambda x, sigma: (x + torch.randn_like(x) * sigma).clamp_(0.0, 1.0)),
    "speckle": ("c", lambda x, c: (x + x * torch.randn_like(x) * c).clamp_(0.0, 1.0)),
}


class NoiseTraining(RobustClassifierModule):
    """Noise on the non-clean part of every batch: ``noise: gaussian`` with ``sigma`` (one value, or a set drawn per
    image: GNT mult) or ``noise: speckle`` with ``c`` (``conf/method/{gnt,gnt_mult,speckle}.yaml``)."""

    def __init__(self, *, noise: str, **kwargs: Any) -> None:
        if noise not in NOISES:
            raise ConfigError(f"unknown noise {noise!r}: use {' or '.join(NOISES)}")
        key, self.noise_fn = NOISES[noise]
        if key not in kwargs:
            raise ConfigError(f"method: missing key '{key}' ({noise} noise)")
        value = kwargs.pop(key)
        self.levels = noise_levels(value, "speckle c" if noise == "speckle" else key)
        super().__init__(**kwargs)
        self.save_hyperparameters({"noise": noise, key: value})

    def perturb_batch(self, x: Tensor, y: Tensor) -> Tensor:
        start = self.num_clean(len(x))
        noisy = x[start:]
        level = self.levels[0]
        if len(self.levels) > 1:  # GNT mult, speckle: one level per image, drawn uniformly from the set
            pick = torch.randint(len(self.levels), (len(noisy),), device=x.device)
            level = noisy.new_tensor(self.levels)[pick].view(-1, 1, 1, 1)
        return torch.cat([x[:start], self.noise_fn(noisy, level)])
