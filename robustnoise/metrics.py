"""Common-corruption robustness metrics (Hendrycks & Dietterich, ICLR 2019) and the benchmarks they are reported for.

With ``E`` a top-1 error in [0, 1]: ``CE_c = sum_s E_sc / sum_s E^AlexNet_sc``, **mCE** its mean over the 15 benchmark
corruptions (x100; ImageNet-C only); **relative mCE** the mean of ``sum_s (E_sc - E_clean) / sum_s (E^AlexNet_sc -
E^AlexNet_clean)``; **unnormalised mCE** the mean error over corruptions x severities (CIFAR-10/100-C, Tiny-ImageNet-C,
MNIST-C). **w/o noises** (Rusak et al. 2020): mean accuracy over the 12 benchmark corruptions other than the 3 noises.
Holdouts are never in mCE; a missing corruption makes a metric NaN with an :class:`IncompleteBenchmarkWarning`.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from types import MappingProxyType
from typing import Any

from robustnoise.corruptions.presets import (
    BENCHMARK_CORRUPTIONS,
    HOLDOUT_CORRUPTIONS,
    MNIST_C_CORRUPTIONS,
    MNISTC_PRESET,
    NOISE_CORRUPTIONS,
    SEVERITIES,
)
from robustnoise.utils.errors import RobustnoiseError

_LEGACY = {"imagenet": "imagenetc", "tinyimagenet": "tinyimagenetc", "cifar": "cifar10c", "mnist": "mnistc"}


class Benchmark(str, Enum):
    """``eval.benchmark``: corruption preset, released-file reader and metric family; ``generated``: the data's severity
    table, unnormalised, the others: the released -C sets (Hendrycks & Dietterich 2019; Mu & Gilmer 2019: MNIST-C)."""

    GENERATED = "generated"
    IMAGENET_C = "imagenetc"
    TINY_IMAGENET_C = "tinyimagenetc"
    CIFAR10_C = "cifar10c"
    CIFAR100_C = "cifar100c"
    MNIST_C = "mnistc"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def _missing_(cls, value: object) -> Benchmark | None:
        return cls(_LEGACY[value]) if value in _LEGACY else None  # the names of older reports

    @classmethod
    def parse(cls, value: str | Benchmark) -> Benchmark:
        """The member named ``value`` (also the names of older reports); a :class:`RobustnoiseError` otherwise."""
        try:
            return cls(value)
        except ValueError:
            raise RobustnoiseError(f"unknown benchmark {value!r}; valid: {', '.join(b.value for b in cls)}") from None

    @property
    def preset(self) -> str | None:
        """The severity table of generated corruptions (``None``: the data's)."""
        return _PRESETS.get(self)

    @property
    def reader(self) -> str | None:
        """The released -C reader (``kind`` of :func:`robustnoise.data.released_c.released_c_sets`)."""
        return None if self is Benchmark.GENERATED else self.value

    @property
    def normalized(self) -> bool:
        """AlexNet-normalised mCE (only meaningful for the released ImageNet-C), else unnormalised mean errors."""
        return self is Benchmark.IMAGENET_C

    @property
    def corruptions(self) -> tuple[str, ...]:
        """The corruptions whose mean is the benchmark's number."""
        return MNIST_C_CORRUPTIONS if self is Benchmark.MNIST_C else BENCHMARK_CORRUPTIONS

    @property
    def holdouts(self) -> tuple[str, ...]:
        """Reported apart, never averaged in (MNIST-C has none: its ``spatter`` is a benchmark corruption)."""
        return () if self is Benchmark.MNIST_C else HOLDOUT_CORRUPTIONS

    @property
    def clean_alias(self) -> str | None:
        """The set that is the clean test split, not a corruption: MNIST-C's ``identity`` (Mu & Gilmer 2019)."""
        return "identity" if self is Benchmark.MNIST_C else None

    @property
    def severities(self) -> tuple[int, ...]:
        """MNIST-C's sets have one level, keyed ``s1``."""
        return (1,) if self is Benchmark.MNIST_C else SEVERITIES


_PRESETS = {
    Benchmark.IMAGENET_C: "imagenet",
    Benchmark.TINY_IMAGENET_C: "tinyimagenet",
    Benchmark.CIFAR10_C: "cifar",
    Benchmark.CIFAR100_C: "cifar",
    Benchmark.MNIST_C: MNISTC_PRESET,
}

ALEXNET_ERR_PER_SEVERITY: Mapping[str, tuple[float, float, float, float, float]] = MappingProxyType(
    {
        "gaussian_noise": (0.69528, 0.82542, 0.93554, 0.98138, 0.99452),
        "shot_noise": (0.71224, 0.85108, 0.93574, 0.98182, 0.99146),
        "impulse_noise": (0.78374, 0.89808, 0.94870, 0.98720, 0.99548),
        "defocus_blur": (0.65624, 0.73202, 0.85036, 0.91364, 0.94714),
        "glass_blur": (0.64308, 0.75054, 0.88806, 0.91622, 0.93344),
        "motion_blur": (0.58430, 0.70048, 0.82108, 0.89750, 0.92638),
        "zoom_blur": (0.70008, 0.76992, 0.80784, 0.84198, 0.87198),
        "snow": (0.71726, 0.88392, 0.86468, 0.91870, 0.94952),
        "frost": (0.61390, 0.79734, 0.88790, 0.89942, 0.93430),
        "fog": (0.67474, 0.76050, 0.84378, 0.87260, 0.94500),
        "brightness": (0.45140, 0.48502, 0.54048, 0.62166, 0.72440),
        "contrast": (0.64548, 0.76150, 0.88874, 0.97760, 0.99270),
        "elastic_transform": (0.52596, 0.70116, 0.55686, 0.64076, 0.80554),
        "pixelate": (0.52218, 0.54620, 0.73728, 0.87092, 0.91262),
        "jpeg_compression": (0.51002, 0.54718, 0.57294, 0.65458, 0.74778),
        "speckle_noise": (0.66192, 0.74440, 0.90246, 0.94548, 0.97268),
        "gaussian_blur": (0.54732, 0.70444, 0.82574, 0.89864, 0.95940),
        "spatter": (0.47196, 0.62194, 0.75052, 0.84132, 0.90182),
        "saturate": (0.59342, 0.65514, 0.51174, 0.70834, 0.82260),
    }
)
"""AlexNet's ImageNet-C top-1 error per severity 1..5 (hendrycks/robustness README table; see also robustness#10)."""

ALEXNET_CLEAN_ERR: float = 0.43478  # AlexNet's clean top-1 error (torchvision: 56.522 % top-1), for relative mCE


class IncompleteBenchmarkWarning(UserWarning):
    """A metric over a fixed set of corruptions (mCE, w/o noises, holdouts) is missing some of them."""


ErrorMatrix = Mapping[str, Mapping[int, float]]  # {corruption: {severity: error}}, errors as fractions in [0, 1]
_KEY = re.compile(r"^(?P<corruption>[^/]+)/s(?P<severity>\d+)$")


def _valid(acc: Mapping[str, Any], field: str) -> bool:
    value = acc.get(field)
    return acc.get("n", 1) > 0 and value is not None and not math.isnan(float(value))


def accuracy_matrix(accuracies: Mapping[str, Mapping[str, Any]], field: str = "top1") -> dict[str, dict[int, float]]:
    """``{corruption: {severity: accuracy %}}`` from the ``<corruption>/s<k>`` entries; skips empty or NaN sets."""
    out: dict[str, dict[int, float]] = {}
    for key, acc in accuracies.items():
        match = _KEY.match(key)
        if match is not None and _valid(acc, field):
            out.setdefault(match["corruption"], {})[int(match["severity"])] = float(acc[field])
    return {c: dict(sorted(v.items())) for c, v in out.items()}


def error_matrix(accuracies: Mapping[str, Mapping[str, Any]], field: str = "top1") -> dict[str, dict[int, float]]:
    """``{corruption: {severity: error}}`` (fractions in [0, 1]) from the accuracies dict."""
    return {c: {s: 1.0 - a / 100.0 for s, a in row.items()} for c, row in accuracy_matrix(accuracies, field).items()}


def clean_error(accuracies: Mapping[str, Mapping[str, Any]], field: str = "top1", key: str = "clean") -> float:
    """Clean error (fraction) from ``accuracies[key]``, NaN if absent or empty."""
    acc = accuracies.get(key)
    return 1.0 - float(acc[field]) / 100.0 if acc is not None and _valid(acc, field) else math.nan


def num(value: Any) -> float:
    """``value`` as a float; NaN for None, non-numbers and booleans."""
    try:
        return math.nan if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return math.nan


def mean(values: Iterable[Any]) -> float:
    """Mean of the finite numbers of ``values``; NaN if there is none."""
    finite = [v for v in map(num, values) if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _mean_over(matrix: ErrorMatrix, names: Sequence[str]) -> float:
    return mean(mean(matrix[c].values()) for c in names if c in matrix)


def _missing(errors: ErrorMatrix, corruptions: Sequence[str], what: str) -> bool:
    """Warn (and return True: the metric is NaN) if a corruption is missing; warn on partial severities."""
    missing = [c for c in corruptions if not errors.get(c)]
    partial = [c for c in corruptions if not missing and set(errors[c]) != set(SEVERITIES)]
    if missing or partial:
        message = (
            f"{what} is NaN: needs all {len(corruptions)} corruptions, missing {', '.join(missing)}"
            if missing
            else f"{what} uses severities other than {', '.join(map(str, SEVERITIES))} for {', '.join(partial)}: "
            "not comparable with published numbers"
        )
        warnings.warn(message, IncompleteBenchmarkWarning, stacklevel=3)
    return bool(missing)


def _alexnet_sum(corruption: str, severities: Iterable[int]) -> float:
    return sum(ALEXNET_ERR_PER_SEVERITY[corruption][s - 1] for s in severities)


def _ce(corruption: str, row: Mapping[int, float]) -> float:
    """AlexNet-normalised corruption error over the severities present (a fraction; 1 = AlexNet)."""
    return sum(row.values()) / _alexnet_sum(corruption, row)


def mce(errors: ErrorMatrix, corruptions: Sequence[str] = BENCHMARK_CORRUPTIONS) -> float:
    """AlexNet-normalised mCE in % over the severities present (ImageNet-C); NaN + warning if incomplete."""
    if _missing(errors, corruptions, "mCE"):
        return math.nan
    return 100.0 * mean(_ce(c, errors[c]) for c in corruptions)


def unnormalized_mce(errors: ErrorMatrix, corruptions: Sequence[str] = BENCHMARK_CORRUPTIONS) -> float:
    """Mean error over ``corruptions`` x severities, in %: CIFAR-10/100-C, Tiny-ImageNet-C, MNIST-C."""
    if _missing(errors, corruptions, "unnormalised mCE"):
        return math.nan
    return 100.0 * _mean_over(errors, corruptions)


def relative_mce(errors: ErrorMatrix, clean_error: float, corruptions: Sequence[str] = BENCHMARK_CORRUPTIONS) -> float:
    """Relative mCE in % over the severities present (``clean_error``: a fraction); NaN + warning if incomplete."""
    if math.isnan(clean_error):
        warnings.warn("relative mCE is NaN: no clean error", IncompleteBenchmarkWarning, stacklevel=2)
        return math.nan
    if _missing(errors, corruptions, "relative mCE"):
        return math.nan
    return 100.0 * mean(
        (sum(errors[c].values()) - clean_error * len(errors[c]))
        / (_alexnet_sum(c, errors[c]) - ALEXNET_CLEAN_ERR * len(errors[c]))
        for c in corruptions
    )


def accuracy_without_noise(
    accuracies: Mapping[str, Mapping[str, Any]], corruptions: Sequence[str] = BENCHMARK_CORRUPTIONS
) -> dict[str, float]:
    """Mean top-1/top-5 (%) over ``corruptions`` but the 3 noises (w/o noises); NaN + warning if incomplete."""
    kept = [c for c in corruptions if c not in NOISE_CORRUPTIONS]
    matrices = {field: accuracy_matrix(accuracies, field) for field in ("top1", "top5")}
    return {
        field: math.nan if _missing(matrix, kept, f"accuracy w/o noises ({field})") else _mean_over(matrix, kept)
        for field, matrix in matrices.items()
    }


def robustness_summary(
    accuracies: Mapping[str, Mapping[str, Any]], benchmark: Benchmark | str = Benchmark.IMAGENET_C, warn: bool = True
) -> dict[str, float]:
    """``{name: %}``: ``clean_*`` (MNIST-C: ``identity/s1`` if no ``clean``), ``c_*``, ``no_noise_*``, ``s<k>_top1``,
    ``*mce``, ``holdout_*`` and ``<corruption>/{top1,top5,ce}`` (CE AlexNet-normalised on ImageNet-C, else the mean
    error); NaN where undefined, one warning (if ``warn``) if the benchmark is incomplete."""
    bench = Benchmark.parse(benchmark)
    mnist = bench is Benchmark.MNIST_C
    normalized, corruptions, holdouts = bench.normalized, bench.corruptions, bench.holdouts
    top1, top5 = accuracy_matrix(accuracies, "top1"), accuracy_matrix(accuracies, "top5")
    errors = error_matrix(accuracies, "top1")
    clean_key = f"{bench.clean_alias}/s1" if bench.clean_alias and "clean" not in accuracies else "clean"
    out = {f"clean_{f}": 100.0 * (1.0 - clean_error(accuracies, f, clean_key)) for f in ("top1", "top5")}
    with warnings.catch_warnings():  # one consolidated warning below instead of one per metric
        warnings.simplefilter("ignore", IncompleteBenchmarkWarning)
        out["c_top1"], out["c_top5"] = _mean_over(top1, corruptions), _mean_over(top5, corruptions)
        if not mnist:
            out.update({f"no_noise_{f}": v for f, v in accuracy_without_noise(accuracies, corruptions).items()})
        if normalized:
            out["mce"] = mce(errors, corruptions)
            out["relative_mce"] = relative_mce(errors, clean_error(accuracies, "top1"), corruptions)
        out["unnormalized_mce"] = unnormalized_mce(errors, corruptions)
        for severity in () if mnist else SEVERITIES:
            values = [top1[c][severity] for c in corruptions if severity in top1.get(c, {})]
            if values:
                out[f"s{severity}_top1"] = mean(values)

        canonical = (*corruptions, *holdouts)
        for corruption in [c for c in canonical if c in top1] + sorted(set(top1) - {*canonical, bench.clean_alias}):
            out[f"{corruption}/top1"] = mean(top1[corruption].values())
            out[f"{corruption}/top5"] = mean(top5.get(corruption, {}).values())
            ce = _ce(corruption, errors[corruption]) if corruption in ALEXNET_ERR_PER_SEVERITY else math.nan
            out[f"{corruption}/ce"] = 100.0 * (ce if normalized else mean(errors[corruption].values()))

        if any(c in top1 for c in holdouts):
            out["holdout_top1"], out["holdout_top5"] = _mean_over(top1, holdouts), _mean_over(top5, holdouts)
            out["holdout_mce"] = (mce if normalized else unnormalized_mce)(errors, holdouts)

    if not warn:
        return out
    problems, severities = [], bench.severities
    missing = [c for c in corruptions if c not in top1]
    if missing:
        nan = ["mce", "relative_mce"] * normalized + ["no_noise_*"] * (not mnist)
        problems.append(
            f"missing {len(missing)} of the {len(corruptions)} corruptions ({', '.join(missing)}): "
            f"{', '.join([*nan, 'unnormalized_mce'])} are NaN and c_top1/c_top5 average only the others"
        )
    partial = [c for c in corruptions if c in top1 and set(top1[c]) != set(severities)]
    if partial:
        problems.append(
            f"{', '.join(partial)} lack some of severities {', '.join(map(str, severities))} (not comparable "
            "with published numbers)"
        )
    absent = [c for c in holdouts if c not in top1]
    if 0 < len(absent) < len(holdouts):
        problems.append(f"holdout_mce is NaN: missing holdouts {', '.join(absent)}")
    if normalized and math.isnan(clean_error(accuracies)):
        problems.append("relative_mce is NaN: no clean accuracy")
    if problems:
        warnings.warn(f"{bench} robustness summary: {'; '.join(problems)}", IncompleteBenchmarkWarning, stacklevel=2)
    return out
