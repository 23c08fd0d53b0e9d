"""The MNIST-C corruptions (Mu & Gilmer 2019), one fixed severity each."""

from __future__ import annotations

from torch import Tensor

from robustnoise.utils.errors import RobustnoiseError


def corrupt_mnist_c(images: Tensor, name: str, seed: int | Tensor = 0) -> Tensor:
    """Apply MNIST-C corruption ``name``."""
    raise RobustnoiseError(f"MNIST-C corruption {name!r} is not implemented yet")
