"""Speckle noise training (Rusak et al. 2020, §4 and App. B).

``clip(x + x * n * c, 0, 1)`` with n ~ N(0, I) and c drawn per image from the ImageNet-C speckle_noise severities
{0.15, 0.2, 0.35, 0.45, 0.6}; the first ``round(B * p_clean)`` images of every batch stay clean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from robustnoise.methods.base import RobustClassifierModule
from robustnoise.methods.gnt import noise_levels, per_image_choice


def speckle_noise(x: Tensor, c: Tensor | float) -> Tensor:
    """Multiplicative Gaussian noise ``clip(x + x * n * c, 0, 1)``."""
    return (x + x * torch.randn_like(x) * c).clamp_(0.0, 1.0)


class SpeckleNoiseTraining(RobustClassifierModule):
    """Speckle noise on the non-clean part of every batch, c per image from a set."""

    def __init__(self, *, c: Sequence[float], **kwargs: Any) -> None:
        cs = noise_levels(c, "speckle c")
        super().__init__(**kwargs)
        self.save_hyperparameters("c")
        self.cs = cs

    def perturb_batch(self, x: Tensor, y: Tensor) -> Tensor:
        start = self.num_clean(len(x))
        noisy = x[start:]
        return torch.cat([x[:start], speckle_noise(noisy, per_image_choice(self.cs, len(noisy), noisy))])
