"""``corrupt``: one entry point for all corruptions, presets and seeding.

The corruptions of Hendrycks & Dietterich (2019), "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ImageNet-C), with the tables of :mod:`robustnoise.corruptions.presets`, and MNIST-C (Mu & Gilmer
2019; preset ``mnistc``), looked up in :mod:`robustnoise.corruptions.registry`; importing the families registers them.
"""

from __future__ import annotations

from torch import Tensor

from robustnoise.corruptions import blur, digital, mnist_c, noise, weather  # noqa: F401  (they register themselves)
from robustnoise.corruptions.api_types import CorruptionFn
from robustnoise.corruptions.presets import check_severity, corruption_id
from robustnoise.corruptions.registry import CORRUPTION_FNS, check_images, lookup, per_image_seeds
from robustnoise.utils.errors import RobustnoiseError

__all__ = ["CORRUPTION_FNS", "CorruptionFn", "corrupt", "corruption_id"]


def corrupt(images: Tensor, name: str, severity: int, preset: str = "imagenet", seed: int | Tensor = 0) -> Tensor:
    """Apply corruption ``name`` at ``severity`` (1..5; MNIST-C: 1) to a batch.

    Args:
        images: Float tensor (N, C, H, W) in [0, 1], any number of channels, any device.
        name: One of ``ALL_CORRUPTIONS`` (or of ``MNIST_C_CORRUPTIONS`` with ``preset='mnistc'``).
        preset: Parameter table: ``imagenet``, ``cifar``, ``tinyimagenet`` or ``mnistc``.
        seed: An int, giving image ``i`` the seed ``sample_seeds(seed, i, corruption_seed_key(name), severity)``, or
            an int64 tensor (N,) of per-image seeds (from the dataset indices: independent of the batch).

    Returns:
        Corrupted images in [0, 1], same shape, dtype and device; :class:`RobustnoiseError` for unknown names or
        presets, a severity outside 1..5 and bad images or seeds.
    """
    entry = lookup(name, preset)
    severity = check_severity(severity)
    table = entry.params[preset]
    if severity > len(table):
        raise RobustnoiseError(f"{preset} has {len(table)} severity level(s) per corruption, got severity {severity}")
    check_images(images)
    seeds = per_image_seeds(seed, images.shape[0], name, severity, images.device)
    return entry.fn(images, table[severity - 1], seeds) if images.shape[0] else images.clone()
