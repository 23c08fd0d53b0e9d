"""Batched noise corruptions of ImageNet-C (Hendrycks & Dietterich 2019, ``make_imagenet_c.py``).

Each function takes float images (N, C, H, W) in [0, 1] on any device, the severity parameter from
:mod:`robustnoise.corruptions.presets` and one int64 seed per sample, and returns clipped images of the input dtype.
Channels (any number) get independent draws, as in the reference, which draws per array element. Image ``i``'s
draws come from its own generator (:func:`robustnoise.corruptions.rng.generators`, stream 0); the transform is
applied image by image, while its draws are in cache.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from robustnoise.corruptions import rng
from robustnoise.corruptions.api_types import prepare_images
from robustnoise.corruptions.registry import register

__all__ = ["gaussian_noise", "impulse_noise", "shot_noise", "speckle_noise"]


def _per_image(images: Tensor, seeds: Tensor, fn: Callable[[Tensor, Tensor, torch.Generator], None]) -> Tensor:
    """``fn(x_i, out_i, generator_i)`` for every image, in float32 (float64 for float64 input); returns the output."""
    x, seeds = prepare_images(images, seeds)
    device = rng._compute_device(images.device)
    x = x.to(device)
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    for xi, oi, gen in zip(x, out, rng.generators(seeds, 0, device)):
        fn(xi, oi, gen)
    return out.to(device=images.device, dtype=images.dtype)


def _normal(out: Tensor, std: float, gen: torch.Generator) -> Tensor:
    """``out`` filled with N(0, std^2) draws made in float32 (so float64 images get the same draws)."""
    if out.dtype == torch.float32:
        return out.normal_(0.0, std, generator=gen)
    return out.copy_(torch.empty_like(out, dtype=torch.float32).normal_(0.0, std, generator=gen))


@register("gaussian_noise", "noise")
def gaussian_noise(images: Tensor, severity_param: float, seeds: Tensor) -> Tensor:
    """Additive Gaussian noise: ``clip(x + N(0, c^2))`` (ImageNet-C ``gaussian_noise``)."""
    c = float(severity_param)

    def fn(x: Tensor, out: Tensor, gen: torch.Generator) -> None:
        _normal(out, c, gen).add_(x).clamp_(0.0, 1.0)

    return _per_image(images, seeds, fn)


@register("speckle_noise", "noise")
def speckle_noise(images: Tensor, severity_param: float, seeds: Tensor) -> Tensor:
    """Multiplicative Gaussian noise: ``clip(x + x N(0, c^2))`` (ImageNet-C ``speckle_noise``, a holdout corruption)."""
    c = float(severity_param)

    def fn(x: Tensor, out: Tensor, gen: torch.Generator) -> None:
        torch.addcmul(x, x, _normal(out, c, gen), out=out).clamp_(0.0, 1.0)

    return _per_image(images, seeds, fn)


@register("shot_noise", "noise")
def shot_noise(images: Tensor, severity_param: float, seeds: Tensor) -> Tensor:
    """Poisson (photon shot) noise: ``clip(Poisson(x c) / c)`` (ImageNet-C ``shot_noise``), rates in float64."""
    c = float(severity_param)

    def fn(x: Tensor, out: Tensor, gen: torch.Generator) -> None:
        out.copy_(torch.poisson(x.double().mul_(c).clamp_(min=0.0), generator=gen).div_(c).clamp_(0.0, 1.0))

    return _per_image(images, seeds, fn)


@register("impulse_noise", "noise")
def impulse_noise(images: Tensor, severity_param: float, seeds: Tensor) -> Tensor:
    """Salt-and-pepper noise as skimage ``random_noise(mode='s&p', amount=c)`` (ImageNet-C ``impulse_noise``).

    Each element is hit with probability ``c``; a hit becomes 0 or 1 with probability 1/2 each. One uniform ``u``
    decides both: ``u < c/2`` is pepper, ``c/2 <= u < c`` salt.
    """
    c = float(severity_param)

    def fn(x: Tensor, out: Tensor, gen: torch.Generator) -> None:
        u = torch.empty_like(out, dtype=torch.float32).uniform_(generator=gen)
        salt = (u >= 0.5 * c).to(out.dtype)
        keep = (u >= c).to(out.dtype)
        torch.clamp(x, 0.0, 1.0, out=out).mul_(keep).add_(salt.sub_(keep))  # salt - keep: 1 on salt hits only

    return _per_image(images, seeds, fn)
