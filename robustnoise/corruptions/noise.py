"""Batched noise corruptions of ImageNet-C (Hendrycks & Dietterich 2019, ``make_imagenet_c.py``).

Each function takes float images (N, C, H, W) in [0, 1] on any device, the severity parameter from
:mod:`robustnoise.corruptions.presets` and one int64 seed per sample, and returns clipped images of the input dtype.
Channels (any number) get independent draws, as in the reference, which draws per array element.
"""

from __future__ import annotations

import torch
from torch import Tensor

from robustnoise.corruptions import rng

__all__ = ["gaussian_noise", "impulse_noise", "shot_noise", "speckle_noise"]


def _prepare(images: Tensor, seeds: Tensor) -> tuple[Tensor, Tensor]:
    """Images in a working dtype (float32 for half precision) and seeds on the images' device."""
    if images.dim() != 4 or not images.dtype.is_floating_point:
        raise ValueError(f"images must be a float tensor (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    if seeds.shape != (images.shape[0],):
        raise ValueError(f"need one seed per image: seeds {tuple(seeds.shape)}, images {tuple(images.shape)}")
    work = images if images.dtype in (torch.float32, torch.float64) else images.float()
    return work, seeds.to(images.device)


def gaussian_noise(images: Tensor, severity_param: float, seeds: Tensor) -> Tensor:
    """Additive Gaussian noise: ``clip(x + N(0, c^2))`` (ImageNet-C ``gaussian_noise``)."""
    x, seeds = _prepare(images, seeds)
    noise = rng.normal(seeds, tuple(x.shape[1:]), dtype=x.dtype) * float(severity_param)
    return (x + noise).clamp_(0.0, 1.0).to(images.dtype)


def shot_noise(images: Tensor, severity_param: float, seeds: Tensor) -> Tensor:
    """Poisson (photon shot) noise: ``clip(Poisson(x c) / c)`` (ImageNet-C ``shot_noise``)."""
    x, seeds = _prepare(images, seeds)
    c = float(severity_param)
    counts = rng.poisson(x.to(torch.float64) * c, seeds)
    return (counts / c).clamp_(0.0, 1.0).to(images.dtype)


def impulse_noise(images: Tensor, severity_param: float, seeds: Tensor) -> Tensor:
    """Salt-and-pepper noise as skimage ``random_noise(mode='s&p', amount=c)`` (ImageNet-C ``impulse_noise``).

    Each element is hit with probability ``c``; a hit becomes 0 or 1 with probability 1/2 each.
    """
    x, seeds = _prepare(images, seeds)
    amount = float(severity_param)
    # One uniform decides both: u < c/2 -> pepper, c/2 <= u < c -> salt.
    u = rng.uniform(seeds, tuple(x.shape[1:]), dtype=torch.float64)
    out = torch.where(u < amount, (u >= 0.5 * amount).to(x.dtype), x)
    return out.clamp_(0.0, 1.0).to(images.dtype)


def speckle_noise(images: Tensor, severity_param: float, seeds: Tensor) -> Tensor:
    """Multiplicative Gaussian noise: ``clip(x + x N(0, c^2))`` (ImageNet-C ``speckle_noise``, a holdout corruption)."""
    x, seeds = _prepare(images, seeds)
    noise = rng.normal(seeds, tuple(x.shape[1:]), dtype=x.dtype) * float(severity_param)
    return (x + x * noise).clamp_(0.0, 1.0).to(images.dtype)
