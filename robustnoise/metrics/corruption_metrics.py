"""Common-corruption robustness metrics: CE, mCE, relative mCE, unnormalised mCE, accuracy without the noises.

Definitions from Hendrycks & Dietterich (ICLR 2019), "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations". With ``E`` a top-1 error in [0, 1], ``c`` a corruption and ``s`` a severity:

- ``CE_c = sum_s E_{s,c} / sum_s E^AlexNet_{s,c}``; **mCE** is the mean CE over the 15 benchmark corruptions (x100).
  AlexNet (torchvision, full 50k ImageNet val) gives 100 by construction. Only meaningful for the released ImageNet-C.
- ``relative CE_c = sum_s (E_{s,c} - E_clean) / sum_s (E^AlexNet_{s,c} - E^AlexNet_clean)``; relative mCE = their mean.
- **Unnormalised mCE** = mean error over 15 corruptions x 5 severities (x100) = 100 - mean corruption accuracy: the
  number reported for CIFAR-10-C / CIFAR-100-C / Tiny-ImageNet-C (not normalised by any model), and for MNIST-C as
  the mean over its 15 corruptions (one severity each).
- **w/o noises** (Rusak et al. 2020): mean accuracy over the 12 benchmark corruptions that are not gaussian / shot /
  impulse noise. The 4 holdout corruptions are never part of mCE; they are reported separately.

The metrics take one error matrix ``{corruption: {severity: error}}`` (fractions), made by :func:`error_matrix` from
the accuracies of :meth:`robustnoise.eval.suite.CorruptionSuite.accuracies` (``{"clean" | "<corruption>/s<k>":
{"top1": %, "top5": %, "n": count}}``), which skips sets with ``n == 0`` or a NaN accuracy. A missing benchmark
corruption makes mCE NaN with an :class:`IncompleteBenchmarkWarning` instead of a silently wrong number.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from robustnoise.corruptions.presets import BENCHMARK_CORRUPTIONS, NOISE_CORRUPTIONS, SEVERITIES
from robustnoise.metrics.benchmark import Benchmark

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
"""Top-1 error of torchvision AlexNet on ImageNet-C per severity 1..5, as fractions: the 15 benchmark and the 4 holdout
corruptions of the "AlexNet ImageNet-C Error" table of the hendrycks/robustness README (see also robustness#10)."""

ALEXNET_ERR: Mapping[str, float] = MappingProxyType(
    {name: round(sum(row) / len(row), 6) for name, row in ALEXNET_ERR_PER_SEVERITY.items()}
)
"""AlexNet's mean top-1 error over the 5 severities (the table's "Average" column): the CE denominators."""

ALEXNET_CLEAN_ERR: float = 0.43478
"""AlexNet's clean ImageNet top-1 error (torchvision AlexNet: 56.522 % top-1 accuracy), at the precision of the
AlexNet table; used by relative mCE and configurable."""


class IncompleteBenchmarkWarning(UserWarning):
    """A metric over a fixed set of corruptions (mCE, w/o noises, holdouts) is missing some of them."""


ErrorMatrix = Mapping[str, Mapping[int, float]]
"""``{corruption: {severity: error}}``, errors as fractions in [0, 1]."""
_KEY = re.compile(r"^(?P<corruption>[^/]+)/s(?P<severity>\d+)$")
_NAN = float("nan")


def _valid(acc: Mapping[str, Any], field: str) -> bool:
    value = acc.get(field)
    return acc.get("n", 1) > 0 and value is not None and not math.isnan(float(value))


def accuracy_matrix(accuracies: Mapping[str, Mapping[str, Any]], field: str = "top1") -> dict[str, dict[int, float]]:
    """``{corruption: {severity: accuracy %}}`` from the ``<corruption>/s<k>`` entries; skips empty or NaN sets."""
    out: dict[str, dict[int, float]] = {}
    for key, acc in accuracies.items():
        match = _KEY.match(key)
        if match is None or not _valid(acc, field):
            continue
        out.setdefault(match["corruption"], {})[int(match["severity"])] = float(acc[field])
    return {c: dict(sorted(v.items())) for c, v in out.items()}


def error_matrix(accuracies: Mapping[str, Mapping[str, Any]], field: str = "top1") -> dict[str, dict[int, float]]:
    """``{corruption: {severity: error}}`` (fractions in [0, 1]) from the accuracies dict."""
    return {c: {s: 1.0 - a / 100.0 for s, a in row.items()} for c, row in accuracy_matrix(accuracies, field).items()}


def clean_error(accuracies: Mapping[str, Mapping[str, Any]], field: str = "top1", key: str = "clean") -> float:
    """Clean error (fraction) from ``accuracies[key]``, NaN if absent or empty."""
    acc = accuracies.get(key)
    return 1.0 - float(acc[field]) / 100.0 if acc is not None and _valid(acc, field) else _NAN


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else _NAN


def _missing(errors: ErrorMatrix, corruptions: Sequence[str], what: str) -> bool:
    missing = [c for c in corruptions if not errors.get(c)]
    if missing:
        warnings.warn(
            f"{what} is NaN: needs all {len(corruptions)} corruptions, missing {', '.join(missing)}",
            IncompleteBenchmarkWarning,
            stacklevel=3,
        )
        return True
    partial = [c for c in corruptions if set(errors[c]) != set(SEVERITIES)]
    if partial:
        warnings.warn(
            f"{what} uses severities other than {', '.join(map(str, SEVERITIES))} for {', '.join(partial)}: not "
            "comparable with published numbers",
            IncompleteBenchmarkWarning,
            stacklevel=3,
        )
    return False


def _alexnet_sum(corruption: str, severities: Iterable[int]) -> float:
    return sum(ALEXNET_ERR_PER_SEVERITY[corruption][s - 1] for s in severities)


def corruption_ces(errors: ErrorMatrix) -> dict[str, float]:
    """AlexNet-normalised corruption errors ``CE_c = sum_s E_sc / sum_s E^AlexNet_sc`` over the severities present
    (fractions; 1 = AlexNet), for every corruption of the AlexNet table."""
    return {
        c: sum(row.values()) / _alexnet_sum(c, row)
        for c, row in errors.items()
        if row and c in ALEXNET_ERR_PER_SEVERITY
    }


def mce(errors: ErrorMatrix, normalize: bool = True, corruptions: Sequence[str] = BENCHMARK_CORRUPTIONS) -> float:
    """Mean corruption error over ``corruptions`` (default: the 15 benchmark ones), in %.

    ``normalize=True``: AlexNet-normalised mCE (Hendrycks & Dietterich 2019; ImageNet-C only), with AlexNet's errors
    at the severities present (a warning when they are not all 5). ``normalize=False``: the plain mean error
    (:func:`unnormalized_mce`). NaN with a warning if a corruption is missing.
    """
    if _missing(errors, corruptions, "mCE" if normalize else "unnormalised mCE"):
        return _NAN
    if normalize:
        ces = corruption_ces({c: errors[c] for c in corruptions})
        return 100.0 * _mean(ces.values())
    return 100.0 * _mean(_mean(errors[c].values()) for c in corruptions)


def unnormalized_mce(errors: ErrorMatrix, corruptions: Sequence[str] = BENCHMARK_CORRUPTIONS) -> float:
    """Mean error over ``corruptions`` x severities, in % (= 100 - mean corruption accuracy): the number of
    CIFAR-10/100-C, Tiny-ImageNet-C and (``corruptions=MNIST_C_CORRUPTIONS``, one severity) MNIST-C."""
    return mce(errors, normalize=False, corruptions=corruptions)


def relative_mce(
    errors: ErrorMatrix,
    clean_error: float,
    corruptions: Sequence[str] = BENCHMARK_CORRUPTIONS,
    alexnet_clean_err: float = ALEXNET_CLEAN_ERR,
) -> float:
    """Relative mCE in %: mean over ``corruptions`` of ``sum_s (E_sc - E_clean) / sum_s (A_sc - A_clean)`` over the
    severities present; ``clean_error`` is the model's clean error (fraction). NaN with a warning if the clean error or
    a corruption is missing."""
    if math.isnan(clean_error):
        warnings.warn("relative mCE is NaN: no clean error", IncompleteBenchmarkWarning, stacklevel=2)
        return _NAN
    if _missing(errors, corruptions, "relative mCE"):
        return _NAN
    ratios = [
        (sum(errors[c].values()) - clean_error * len(errors[c]))
        / (_alexnet_sum(c, errors[c]) - alexnet_clean_err * len(errors[c]))
        for c in corruptions
    ]
    return 100.0 * _mean(ratios)


def accuracy_without_noise(
    accuracies: Mapping[str, Mapping[str, Any]],
    corruptions: Sequence[str] = BENCHMARK_CORRUPTIONS,
    noises: Sequence[str] = NOISE_CORRUPTIONS,
) -> dict[str, float]:
    """``{"top1", "top5"}``: mean accuracy (%) over the benchmark corruptions other than ``noises`` (IN-C w/o noises:
    the 12 non-noise corruptions), each corruption averaged over its severities first. NaN + warning if one is
    missing."""
    kept = [c for c in corruptions if c not in noises]
    out = {}
    for field in ("top1", "top5"):
        matrix = accuracy_matrix(accuracies, field)
        missing = [c for c in kept if c not in matrix]
        if missing:
            warnings.warn(
                f"accuracy w/o noises ({field}) is NaN: missing {', '.join(missing)}",
                IncompleteBenchmarkWarning,
                stacklevel=2,
            )
        out[field] = _NAN if missing else _mean(_mean(matrix[c].values()) for c in kept)
    return out


def robustness_summary(
    accuracies: Mapping[str, Mapping[str, Any]], benchmark: Benchmark | str = Benchmark.IMAGENET_C
) -> dict[str, float]:
    """All robustness numbers of one evaluation as a flat ``{name: float}`` dict (accuracies and errors in %).

    ``benchmark`` (:class:`Benchmark`) sets the metric family: ``imagenetc`` AlexNet-normalised ``mce`` and
    ``relative_mce``; ``mnistc`` means over its 15 corruptions (``identity/s1`` stands in for a missing ``clean``);
    the others unnormalised numbers over the 15 benchmark corruptions. Keys:

    - ``clean_top1``, ``clean_top5``; ``c_top1``, ``c_top5`` (mean over the benchmark corruptions and severities);
    - ``no_noise_top1``, ``no_noise_top5`` (not for ``mnistc``); ``unnormalized_mce``; ``mce``, ``relative_mce``
      (``imagenetc``);
    - ``s<k>_top1`` (mean over the benchmark corruptions at severity k; not for ``mnistc``);
    - ``<corruption>/top1``, ``<corruption>/top5``, ``<corruption>/ce`` for every corruption evaluated (``ce`` is the
      AlexNet-normalised CE for ``imagenetc``, else the mean error);
    - ``holdout_top1``, ``holdout_top5``, ``holdout_mce`` (normalised for ``imagenetc``, else mean error) when any of
      the 4 holdout corruptions was evaluated (not for ``mnistc``).

    Values are NaN where undefined (JSON writers emit ``NaN``); incomplete benchmarks warn.
    """
    bench = Benchmark.parse(benchmark)
    mnist = bench is Benchmark.MNIST_C
    normalized, corruptions, holdouts = bench.normalized, bench.corruptions, bench.holdouts
    top1 = accuracy_matrix(accuracies, "top1")
    top5 = accuracy_matrix(accuracies, "top5")
    errors = error_matrix(accuracies, "top1")

    clean_key = "identity/s1" if mnist and "clean" not in accuracies else "clean"
    out: dict[str, float] = {
        "clean_top1": 100.0 * (1.0 - clean_error(accuracies, "top1", clean_key)),
        "clean_top5": 100.0 * (1.0 - clean_error(accuracies, "top5", clean_key)),
    }

    def mean_over(matrix: Mapping[str, Mapping[int, float]], names: Sequence[str]) -> float:
        return _mean(_mean(matrix[c].values()) for c in names if c in matrix)

    with warnings.catch_warnings():  # one consolidated warning below instead of one per metric
        warnings.simplefilter("ignore", IncompleteBenchmarkWarning)
        out["c_top1"] = mean_over(top1, corruptions)
        out["c_top5"] = mean_over(top5, corruptions)
        if not mnist:
            no_noise = accuracy_without_noise(accuracies, corruptions)
            out["no_noise_top1"], out["no_noise_top5"] = no_noise["top1"], no_noise["top5"]
        if normalized:
            out["mce"] = mce(errors, True, corruptions)
            out["relative_mce"] = relative_mce(errors, clean_error(accuracies, "top1"), corruptions)
        out["unnormalized_mce"] = unnormalized_mce(errors, corruptions)
        if not mnist:
            for severity in SEVERITIES:
                values = [top1[c][severity] for c in corruptions if severity in top1.get(c, {})]
                if values:
                    out[f"s{severity}_top1"] = _mean(values)

        ces = corruption_ces(errors) if normalized else {}
        canonical = (*corruptions, *holdouts)
        for corruption in [c for c in canonical if c in top1] + sorted(set(top1) - set(canonical)):
            if mnist and corruption == "identity":
                continue
            out[f"{corruption}/top1"] = _mean(top1[corruption].values())
            out[f"{corruption}/top5"] = _mean(top5[corruption].values()) if corruption in top5 else _NAN
            ce = ces.get(corruption, _NAN) if normalized else _mean(errors[corruption].values())
            out[f"{corruption}/ce"] = 100.0 * ce

        if any(c in top1 for c in holdouts):
            out["holdout_top1"] = mean_over(top1, holdouts)
            out["holdout_top5"] = mean_over(top5, holdouts)
            out["holdout_mce"] = mce(errors, normalized, holdouts)

    _warn_incomplete(bench, top1, normalized and math.isnan(clean_error(accuracies)))
    return out


def _warn_incomplete(bench: Benchmark, top1: Mapping[str, Mapping[int, float]], no_clean: bool) -> None:
    corruptions, holdouts, severities = bench.corruptions, bench.holdouts, bench.severities
    problems = []
    missing = [c for c in corruptions if c not in top1]
    if missing:
        nan = "mce, relative_mce, " if bench.normalized else ""
        nan += "no_noise_*, " if bench is not Benchmark.MNIST_C else ""
        problems.append(
            f"missing {len(missing)} of the {len(corruptions)} corruptions ({', '.join(missing)}): "
            f"{nan}unnormalized_mce are NaN and c_top1/c_top5 average only the others"
        )
    partial = [c for c in corruptions if c in top1 and set(top1[c]) != set(severities)]
    if partial:
        problems.append(
            f"{', '.join(partial)} lack some of severities {', '.join(map(str, severities))} (not comparable "
            "with published numbers)"
        )
    present_holdouts = [c for c in holdouts if c in top1]
    if present_holdouts and len(present_holdouts) < len(holdouts):
        absent = [c for c in holdouts if c not in top1]
        problems.append(f"holdout_mce is NaN: missing holdouts {', '.join(absent)}")
    if no_clean:
        problems.append("relative_mce is NaN: no clean accuracy")
    if problems:
        warnings.warn(f"{bench} robustness summary: {'; '.join(problems)}", IncompleteBenchmarkWarning, stacklevel=3)
