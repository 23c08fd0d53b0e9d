"""Weather corruptions of ImageNet-C (Hendrycks & Dietterich 2019): snow, frost, fog, brightness, spatter."""

from __future__ import annotations

from robustnoise.corruptions.api_types import CorruptionFn

CORRUPTIONS: dict[str, CorruptionFn] = {}
