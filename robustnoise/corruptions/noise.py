"""Batched noise corruptions of ImageNet-C (Hendrycks & Dietterich 2019, ``make_imagenet_c.py``).

Each function takes float images (N, C, H, W) in [0, 1] on any device, the severity parameter from
:mod:`robustnoise.corruptions.presets` and one int64 seed per sample, and returns clipped images of the input dtype.
Channels (any number) get independent draws, as in the reference, which draws per array element.

The draws are those of :mod:`robustnoise.corruptions.rng` (``normal``, ``poisson`` and ``uniform`` with stream 0);
the image transform is applied block by block as the draws are made, while they are in cache, rather than in whole-
batch passes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from robustnoise.corruptions import buffers, rng
from robustnoise.corruptions.registry import register

__all__ = ["gaussian_noise", "impulse_noise", "shot_noise", "speckle_noise"]


def _apply(images: Tensor, seeds: Tensor, fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Validate, move to the compute device, run ``fn(x, seeds)`` on (N, C*H*W) float32/64 rows, restore."""
    if images.dim() != 4 or not images.dtype.is_floating_point:
        raise ValueError(f"images must be a float tensor (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    if seeds.shape != (images.shape[0],):
        raise ValueError(f"need one seed per image: seeds {tuple(seeds.shape)}, images {tuple(images.shape)}")
    rng._check_seeds(seeds)
    device = rng._compute_device(images.device)
    x = images if images.dtype in (torch.float32, torch.float64) else images.float()
    x = x.to(device).reshape(images.shape[0], rng._numel(tuple(images.shape[1:])))
    out = fn(x, seeds.to(device))
    return out.view(images.shape).to(device=images.device, dtype=images.dtype)


@register("gaussian_noise", "noise")
def gaussian_noise(images: Tensor, severity_param: float, seeds: Tensor) -> Tensor:
    """Additive Gaussian noise: ``clip(x + N(0, c^2))`` (ImageNet-C ``gaussian_noise``)."""
    c = float(severity_param)

    def fn(x: Tensor, seeds: Tensor) -> Tensor:
        out = buffers.empty_like(x)
        for r0, r1, c0, c1, z in rng._normal_blocks(seeds, x.shape[1], 0):
            block = out[r0:r1, c0:c1]
            torch.add(x[r0:r1, c0:c1], z.to(x.dtype).mul_(c), out=block).clamp_(0.0, 1.0)
        return out

    return _apply(images, seeds, fn)


@register("speckle_noise", "noise")
def speckle_noise(images: Tensor, severity_param: float, seeds: Tensor) -> Tensor:
    """Multiplicative Gaussian noise: ``clip(x + x N(0, c^2))`` (ImageNet-C ``speckle_noise``, a holdout corruption)."""
    c = float(severity_param)

    def fn(x: Tensor, seeds: Tensor) -> Tensor:
        out = buffers.empty_like(x)
        for r0, r1, c0, c1, z in rng._normal_blocks(seeds, x.shape[1], 0):
            xb = x[r0:r1, c0:c1]
            torch.addcmul(xb, xb, z.to(x.dtype).mul_(c), out=out[r0:r1, c0:c1]).clamp_(0.0, 1.0)
        return out

    return _apply(images, seeds, fn)


@register("shot_noise", "noise")
def shot_noise(images: Tensor, severity_param: float, seeds: Tensor) -> Tensor:
    """Poisson (photon shot) noise: ``clip(Poisson(x c) / c)`` (ImageNet-C ``shot_noise``).

    The counts are those of ``rng.poisson(x.double() * c, seeds)``; ``/ c`` and the clip are done in float64.
    """
    c = float(severity_param)

    def fn(x: Tensor, seeds: Tensor) -> Tensor:
        out = buffers.empty_like(x)
        sampler = rng._PoissonSampler(x, c, seeds, 0)
        for r0, r1, c0, c1, counts in sampler.blocks():
            out[r0:r1, c0:c1] = counts.div_(c).clamp_(0.0, 1.0)
        positions, counts = sampler.finish()
        out.view(-1).scatter_(0, positions, counts.div_(c).clamp_(0.0, 1.0).to(x.dtype))
        return out

    return _apply(images, seeds, fn)


@register("impulse_noise", "noise")
def impulse_noise(images: Tensor, severity_param: float, seeds: Tensor) -> Tensor:
    """Salt-and-pepper noise as skimage ``random_noise(mode='s&p', amount=c)`` (ImageNet-C ``impulse_noise``).

    Each element is hit with probability ``c``; a hit becomes 0 or 1 with probability 1/2 each. One uniform decides
    both: with ``u`` the float64 draws of ``rng.uniform(seeds, shape)``, ``u < c/2`` is pepper, ``c/2 <= u < c``
    salt (compared exactly, as integers).
    """
    hit = rng._word_threshold(float(severity_param))
    pepper = rng._word_threshold(0.5 * float(severity_param))

    def fn(x: Tensor, seeds: Tensor) -> Tensor:
        out = buffers.empty_like(x)
        with rng._scratch(x.device) as scratch:
            for r0, r1, c0, c1, words in rng._word_blocks(seeds, x.shape[1], rng._absorb(rng._TAG_UNIFORM, 0)):
                shape = (r1 - r0, c1 - c0)
                # keep = 1 where not hit; salt = 1 where not pepper; out = clip(x) * keep + (salt - keep), exactly.
                keep = torch.gt(words, hit - 1, out=scratch.get("impulse_keep", shape, x.dtype))
                salt = torch.gt(words, pepper - 1, out=scratch.get("impulse_salt", shape, x.dtype)).sub_(keep)
                torch.clamp(x[r0:r1, c0:c1], 0.0, 1.0, out=out[r0:r1, c0:c1]).mul_(keep).add_(salt)
        return out

    return _apply(images, seeds, fn)
