"""Blur corruptions of ImageNet-C: defocus, glass, motion, zoom and Gaussian blur."""

from __future__ import annotations

from robustnoise.corruptions.api_types import CorruptionFn

CORRUPTIONS: dict[str, CorruptionFn] = {}
