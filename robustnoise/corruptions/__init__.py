"""Batched, seeded, device-agnostic common corruptions (ImageNet-C, Hendrycks & Dietterich 2019)."""

from robustnoise.corruptions.api import CORRUPTION_FNS, corrupt, corruption_id
from robustnoise.corruptions.datasets import CorruptedDataset
from robustnoise.corruptions.presets import (
    ALL_CORRUPTIONS,
    BENCHMARK_CORRUPTIONS,
    CORRUPTION_GROUPS,
    HOLDOUT_CORRUPTIONS,
    NOISE_CORRUPTIONS,
    PRESETS,
    SEVERITIES,
    severity_params,
)
from robustnoise.corruptions.rng import sample_seeds
from robustnoise.corruptions.transforms import Corrupt, RandomCorrupt

__all__ = [
    "ALL_CORRUPTIONS",
    "BENCHMARK_CORRUPTIONS",
    "CORRUPTION_FNS",
    "CORRUPTION_GROUPS",
    "HOLDOUT_CORRUPTIONS",
    "NOISE_CORRUPTIONS",
    "PRESETS",
    "SEVERITIES",
    "corrupt",
    "corruption_id",
    "sample_seeds",
    "severity_params",
    "Corrupt",
    "CorruptedDataset",
    "RandomCorrupt",
]
