"""``corrupt``: one entry point for all corruptions, presets and seeding.

Corruptions of Hendrycks & Dietterich (2019), "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ImageNet-C), with the per-benchmark parameters of :mod:`robustnoise.corruptions.presets`.
"""

from __future__ import annotations

import operator

import torch
from torch import Tensor

from robustnoise.corruptions import blur, digital, noise, weather
from robustnoise.corruptions.presets import ALL_CORRUPTIONS, check_severity, corruption_id, severity_params
from robustnoise.corruptions.rng import sample_seeds
from robustnoise.utils.errors import RobustnoiseError

__all__ = ["CORRUPTION_FNS", "CorruptionFn", "corrupt", "corruption_id"]

from robustnoise.corruptions.api_types import CorruptionFn  # noqa: E402

CORRUPTION_FNS: dict[str, CorruptionFn] = {
    "gaussian_noise": noise.gaussian_noise,
    "shot_noise": noise.shot_noise,
    "impulse_noise": noise.impulse_noise,
    "speckle_noise": noise.speckle_noise,
    **blur.CORRUPTIONS,
    **weather.CORRUPTIONS,
    **digital.CORRUPTIONS,
}
"""Implemented corruptions: each family module (noise, blur, weather, digital) exports a ``CORRUPTIONS`` dict."""


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.dtype.is_floating_point:
        got = f"{images.dtype} tensor of shape {tuple(images.shape)}" if isinstance(images, Tensor) else type(images)
        raise RobustnoiseError(f"images must be a float tensor (N, C, H, W) with values in [0, 1], got {got}")
    if images.numel():
        low, high = torch.aminmax(images)  # one pass, no temporaries (NaN propagates and fails the check)
        if not (bool(low >= 0) and bool(high <= 1)):
            raise RobustnoiseError(
                "images must have values in [0, 1] (scale uint8 images by 1/255, normalise afterwards)"
            )


def per_image_seeds(seed: int | Tensor, num_images: int, name: str, severity: int, device: torch.device) -> Tensor:
    """Validate ``seed`` (int or int64 tensor (N,)) and expand an int to the batch's per-image seeds."""
    if isinstance(seed, Tensor):
        if seed.dtype != torch.int64 or seed.shape != (num_images,):
            raise RobustnoiseError(
                f"seed tensor must be int64 of shape ({num_images},), got {seed.dtype} {tuple(seed.shape)}"
            )
        return seed.to(device)
    try:
        if isinstance(seed, bool):
            raise TypeError
        base = operator.index(seed)
    except TypeError:
        raise RobustnoiseError(
            f"seed must be an int or an int64 tensor of per-image seeds, got {type(seed).__name__}"
        ) from None
    from robustnoise.corruptions.transforms import corruption_seed_key  # the key of any corruption name, MNIST-C too

    indices = torch.arange(num_images, device=device)
    return sample_seeds(base, indices, corruption_seed_key(name), severity)


def corrupt(
    images: Tensor,
    name: str,
    severity: int,
    preset: str = "imagenet",
    seed: int | Tensor = 0,
) -> Tensor:
    """Apply corruption ``name`` at ``severity`` to a batch.

    Args:
        images: Float tensor (N, C, H, W) in [0, 1], any number of channels, any device.
        name: One of :data:`~robustnoise.corruptions.presets.ALL_CORRUPTIONS`.
        severity: 1..5.
        preset: Parameter table: ``imagenet``, ``cifar`` or ``tinyimagenet``.
        seed: An int, giving image ``i`` the seed ``sample_seeds(seed, i, corruption_id(name), severity)``, or an
            int64 tensor (N,) of per-image seeds, typically ``sample_seeds(base, dataset_indices, corruption_id(name),
            severity)``, which makes an image's corruption independent of its batch.

    Returns:
        Corrupted images in [0, 1], same shape, dtype and device.

    Raises:
        RobustnoiseError: unknown corruption or preset, severity outside 1..5, bad images or seeds, or a corruption
            that is not implemented yet.
    """
    if preset == "mnistc":  # the MNIST-C set (Mu & Gilmer 2019): its own corruptions, one fixed severity each
        from robustnoise.corruptions import mnist_c

        _check_images(images)
        return mnist_c.corrupt_mnist_c(images, name, seed)
    param = severity_params(name, severity, preset)  # validates name, severity and preset
    severity = check_severity(severity)
    fn = CORRUPTION_FNS.get(name)
    if fn is None:
        implemented = ", ".join(n for n in ALL_CORRUPTIONS if n in CORRUPTION_FNS)
        raise RobustnoiseError(f"corruption {name!r} is not implemented yet; implemented: {implemented}")
    _check_images(images)
    return fn(images, param, per_image_seeds(seed, images.shape[0], name, severity, images.device))
