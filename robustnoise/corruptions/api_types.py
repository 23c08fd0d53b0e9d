"""The signature every corruption function shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

CorruptionFn = Callable[[Tensor, Any, Tensor], Tensor]
"""``fn(images (N, C, H, W) in [0, 1], severity parameter from the preset, int64 seeds (N,)) -> corrupted images``."""


def prepare_images(images: Tensor, seeds: Tensor) -> tuple[Tensor, Tensor]:
    """Images in a working dtype (float32 for half precision) and seeds on the images' device."""
    if images.dim() != 4 or not images.dtype.is_floating_point:
        raise ValueError(f"images must be a float tensor (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    if seeds.shape != (images.shape[0],):
        raise ValueError(f"need one seed per image: seeds {tuple(seeds.shape)}, images {tuple(images.shape)}")
    work = images if images.dtype in (torch.float32, torch.float64) else images.float()
    return work, seeds.to(images.device)
