"""Digital corruptions of ImageNet-C: contrast, elastic transform, pixelate, JPEG, saturate."""

from __future__ import annotations

from robustnoise.corruptions.api_types import CorruptionFn

CORRUPTIONS: dict[str, CorruptionFn] = {}
