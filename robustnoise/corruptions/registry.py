"""The corruption registry: each corruption function registers itself under its name with :func:`register`; also the
input validation and per-image seeding that :func:`robustnoise.corruptions.api.corrupt` applies before the call."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from robustnoise.corruptions.api_types import CorruptionFn
from robustnoise.corruptions.presets import (
    ALL_CORRUPTIONS,
    MNIST_C_CORRUPTIONS,
    MNISTC_PRESET,
    PRESETS,
    as_int,
    check_corruption,
    check_severity,
    corruption_seed_key,
)
from robustnoise.corruptions.rng import sample_seeds
from robustnoise.utils.errors import RobustnoiseError

__all__ = ["CORRUPTION_FNS", "Corruption", "check_images", "lookup", "per_image_seeds", "register"]


@dataclass(frozen=True)
class Corruption:
    """A registered corruption: ``fn(images, params[preset][severity - 1], seeds)``."""

    name: str
    family: str
    fn: CorruptionFn
    params: Mapping[str, tuple[Any, ...]]


_REGISTRY: dict[tuple[bool, str], Corruption] = {}  # (is MNIST-C, name)
CORRUPTION_FNS: dict[str, CorruptionFn] = {}
"""The registered functions of the 19 ImageNet-C corruptions by name."""


def register(name: str, family: str, params: Mapping[str, tuple[Any, ...]] | None = None) -> Callable:
    """Decorator: register ``fn`` as corruption ``name`` of ``family``.

    ``params`` maps each preset to the severity parameters (severity 1 first); by default the row of ``name`` in every
    table of :data:`~robustnoise.corruptions.presets.PRESETS`. MNIST-C (family ``mnistc``): ``{"mnistc": (param,)}``.
    """
    mnistc = family == MNISTC_PRESET
    if name not in (MNIST_C_CORRUPTIONS if mnistc else ALL_CORRUPTIONS):
        raise ValueError(f"{name!r} is not a {family} corruption name (names live in presets.py)")
    table = params if params is not None else {preset: PRESETS[preset][name] for preset in PRESETS}

    def decorate(fn: CorruptionFn) -> CorruptionFn:
        _REGISTRY[mnistc, name] = Corruption(name, family, fn, table)
        if not mnistc:
            CORRUPTION_FNS[name] = fn
        return fn

    return decorate


def lookup(name: str, preset: str) -> Corruption:
    """The registered corruption ``name`` of ``preset``; raises :class:`RobustnoiseError` for unknown names/presets."""
    if preset != MNISTC_PRESET and preset not in PRESETS:
        raise RobustnoiseError(f"unknown corruption preset {preset!r}; valid: {', '.join([*PRESETS, MNISTC_PRESET])}")
    return _REGISTRY[preset == MNISTC_PRESET, check_corruption(name, preset)]


def check_images(images: Tensor) -> None:
    """Raise :class:`RobustnoiseError` unless ``images`` is a float (N, C, H, W) tensor with values in [0, 1]."""
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.dtype.is_floating_point:
        got = f"{images.dtype} tensor of shape {tuple(images.shape)}" if isinstance(images, Tensor) else type(images)
        raise RobustnoiseError(f"images must be a float tensor (N, C, H, W) with values in [0, 1], got {got}")
    if images.dtype == torch.float32 and images.device.type == "cpu" and images.numel():
        # +0.0 .. 1.0 are the int32 bit patterns 0 .. 0x3F800000, and an int aminmax is 1.6x faster (-0.0: below)
        low, high = torch.aminmax(images.view(torch.int32))
        if bool(low >= 0) and bool(high <= 0x3F800000):
            return
    low, high = torch.aminmax(images) if images.numel() else (0, 0)  # one pass (NaN propagates and fails the check)
    if not (bool(low >= 0) and bool(high <= 1)):
        raise RobustnoiseError("images must have values in [0, 1] (scale uint8 images by 1/255, normalise afterwards)")


def per_image_seeds(seed: int | Tensor, num_images: int, name: str, severity: int, device: torch.device) -> Tensor:
    """Validate ``seed`` (int or int64 tensor (N,)) and expand an int to the batch's per-image seeds."""
    if isinstance(seed, Tensor):
        if seed.dtype != torch.int64 or seed.shape != (num_images,):
            raise RobustnoiseError(
                f"seed tensor must be int64 of shape ({num_images},), got {seed.dtype} {tuple(seed.shape)}"
            )
        return seed.to(device)
    base = as_int(seed, f"seed must be an int or an int64 tensor of per-image seeds, got {type(seed).__name__}")
    indices = torch.arange(num_images, device=device)
    return sample_seeds(base, indices, corruption_seed_key(name), check_severity(severity))
