"""The signature every corruption function shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

CorruptionFn = Callable[[Tensor, Any, Tensor], Tensor]
"""``fn(images (N, C, H, W) in [0, 1], severity parameter from the preset, int64 seeds (N,)) -> corrupted images``."""
