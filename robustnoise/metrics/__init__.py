"""Robustness metrics on the per-set accuracies of an evaluation (mCE, relative mCE, unnormalised mCE, w/o noises)
and the benchmarks they are reported for."""

from robustnoise.metrics.benchmark import Benchmark
from robustnoise.metrics.corruption_metrics import (
    ALEXNET_CLEAN_ERR,
    ALEXNET_ERR,
    ALEXNET_ERR_PER_SEVERITY,
    IncompleteBenchmarkWarning,
    accuracy_matrix,
    accuracy_without_noise,
    error_matrix,
    mce,
    relative_mce,
    robustness_summary,
    unnormalized_mce,
)

__all__ = [
    "ALEXNET_CLEAN_ERR",
    "ALEXNET_ERR",
    "ALEXNET_ERR_PER_SEVERITY",
    "Benchmark",
    "IncompleteBenchmarkWarning",
    "accuracy_matrix",
    "accuracy_without_noise",
    "error_matrix",
    "mce",
    "relative_mce",
    "robustness_summary",
    "unnormalized_mce",
]
