"""Robustness metrics on the per-set accuracies of an evaluation (mCE, relative mCE, unnormalised mCE, w/o noises)."""

from robustnoise.metrics.corruption_metrics import (
    ALEXNET_CLEAN_ERR,
    ALEXNET_ERR,
    ALEXNET_ERR_PER_SEVERITY,
    BENCHMARKS,
    MNIST_C_CORRUPTIONS,
    IncompleteBenchmarkWarning,
    accuracy_matrix,
    accuracy_without_noise,
    clean_error,
    corruption_ces,
    corruption_errors,
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
    "BENCHMARKS",
    "MNIST_C_CORRUPTIONS",
    "IncompleteBenchmarkWarning",
    "accuracy_matrix",
    "accuracy_without_noise",
    "clean_error",
    "corruption_ces",
    "corruption_errors",
    "error_matrix",
    "mce",
    "relative_mce",
    "robustness_summary",
    "unnormalized_mce",
]
