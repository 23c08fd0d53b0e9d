"""Corruption metrics: AlexNet normalisation, relative / unnormalised mCE, w/o noises, holdouts, missing sets."""

from __future__ import annotations

import json
import math
import warnings

import pytest

from robustnoise.corruptions.presets import (
    BENCHMARK_CORRUPTIONS,
    HOLDOUT_CORRUPTIONS,
    MNIST_C_CORRUPTIONS,
    NOISE_CORRUPTIONS,
)
from robustnoise.metrics import (
    ALEXNET_CLEAN_ERR,
    ALEXNET_ERR_PER_SEVERITY,
    Benchmark,
    IncompleteBenchmarkWarning,
    accuracy_without_noise,
    error_matrix,
    mce,
    relative_mce,
    robustness_summary,
    unnormalized_mce,
)
from robustnoise.utils.errors import RobustnoiseError

BENCHMARK_CORRUPTIONS_AND_HOLDOUTS = BENCHMARK_CORRUPTIONS + HOLDOUT_CORRUPTIONS

# Game-of-noise Results/clean_results.txt, vanilla ResNet-50: per-corruption top-1 (mean over severities), canonical
# order; reported IN-C 39.17, mCE 76.70, w/o noises 42.29.
CLEAN_RN50 = (29.29, 27.03, 23.81, 38.75, 26.79, 38.67, 36.24, 32.53, 38.14, 45.83, 68.02, 39.06, 45.25, 44.79, 53.41)


def accuracies_from(per_corruption: dict[str, float], clean: float | None = 76.13, severities=range(1, 6)) -> dict:
    acc: dict = {} if clean is None else {"clean": {"top1": clean, "top5": 93.0, "n": 100}}
    for name, top1 in per_corruption.items():
        for s in severities:
            acc[f"{name}/s{s}"] = {"top1": top1, "top5": min(100.0, top1 + 20.0), "n": 100}
    return acc


def alexnet_accuracies() -> dict:
    acc = {"clean": {"top1": 100 * (1 - ALEXNET_CLEAN_ERR), "top5": 80.0, "n": 50000}}
    for name, row in ALEXNET_ERR_PER_SEVERITY.items():
        for s, err in enumerate(row, start=1):
            acc[f"{name}/s{s}"] = {"top1": 100 * (1 - err), "top5": 50.0, "n": 50000}
    return acc


ALEXNET_ERR = {c: sum(row) / len(row) for c, row in ALEXNET_ERR_PER_SEVERITY.items()}  # mean over the severities

# The "AlexNet ImageNet-C Error" table of the hendrycks/robustness README, as published (the values to normalise by).
PUBLISHED_ALEXNET_TABLE = """
| Gaussian Noise   | 0.886428   | 0.69528    | 0.82542    | 0.93554    | 0.98138    | 0.99452    |
| Shot Noise       | 0.894468   | 0.71224    | 0.85108    | 0.93574    | 0.98182    | 0.99146    |
| Impulse Noise    | 0.922640   | 0.78374    | 0.89808    | 0.94870    | 0.98720    | 0.99548    |
| Defocus Blur     | 0.819880   | 0.65624    | 0.73202    | 0.85036    | 0.91364    | 0.94714    |
| Glass Blur       | 0.826268   | 0.64308    | 0.75054    | 0.88806    | 0.91622    | 0.93344    |
| Motion Blur      | 0.785948   | 0.58430    | 0.70048    | 0.82108    | 0.89750    | 0.92638    |
| Zoom Blur        | 0.798360   | 0.70008    | 0.76992    | 0.80784    | 0.84198    | 0.87198    |
| Snow             | 0.866816   | 0.71726    | 0.88392    | 0.86468    | 0.91870    | 0.94952    |
| Frost            | 0.826572   | 0.61390    | 0.79734    | 0.88790    | 0.89942    | 0.93430    |
| Fog              | 0.819324   | 0.67474    | 0.76050    | 0.84378    | 0.87260    | 0.94500    |
| Brightness       | 0.564592   | 0.45140    | 0.48502    | 0.54048    | 0.62166    | 0.72440    |
| Contrast         | 0.853204   | 0.64548    | 0.76150    | 0.88874    | 0.97760    | 0.99270    |
| Elastic          | 0.646056   | 0.52596    | 0.70116    | 0.55686    | 0.64076    | 0.80554    |
| Pixelate         | 0.717840   | 0.52218    | 0.54620    | 0.73728    | 0.87092    | 0.91262    |
| JPEG Compression | 0.606500   | 0.51002    | 0.54718    | 0.57294    | 0.65458    | 0.74778    |
| Speckle Noise    | 0.845388   | 0.66192    | 0.74440    | 0.90246    | 0.94548    | 0.97268    |
| Gaussian Blur    | 0.787108   | 0.54732    | 0.70444    | 0.82574    | 0.89864    | 0.95940    |
| Spatter          | 0.717512   | 0.47196    | 0.62194    | 0.75052    | 0.84132    | 0.90182    |
| Saturate         | 0.658248   | 0.59342    | 0.65514    | 0.51174    | 0.70834    | 0.82260    |
"""


def test_alexnet_tables_match_the_published_table():
    rows = [line.strip("| ").split("|") for line in PUBLISHED_ALEXNET_TABLE.strip().splitlines()]
    published = {BENCHMARK_CORRUPTIONS_AND_HOLDOUTS[k]: [float(v) for v in row[1:]] for k, row in enumerate(rows)}
    assert all(c.startswith(row[0].strip().lower().replace(" ", "_")) for c, row in zip(published, rows))
    assert {c: tuple(v[1:]) for c, v in published.items()} == dict(ALEXNET_ERR_PER_SEVERITY)
    assert {c: v[0] for c, v in published.items()} == {c: round(e, 6) for c, e in ALEXNET_ERR.items()}  # Average
    assert abs(ALEXNET_CLEAN_ERR - (1 - 0.56522)) < 1e-12  # torchvision AlexNet: 56.522 % top-1


def test_alexnet_own_table_gives_mce_100():
    alexnet = {c: dict(enumerate(row, start=1)) for c, row in ALEXNET_ERR_PER_SEVERITY.items()}
    assert mce(alexnet) == pytest.approx(100.0)
    assert mce(error_matrix(alexnet_accuracies())) == pytest.approx(100.0)
    assert relative_mce(alexnet, clean_error=ALEXNET_CLEAN_ERR) == pytest.approx(100.0)
    assert relative_mce(error_matrix(alexnet_accuracies()), clean_error=ALEXNET_CLEAN_ERR) == pytest.approx(100.0)
    summary = robustness_summary(alexnet_accuracies(), "imagenet")
    assert summary["mce"] == pytest.approx(100.0)
    assert summary["relative_mce"] == pytest.approx(100.0)
    assert all(summary[f"{c}/ce"] == pytest.approx(100.0) for c in BENCHMARK_CORRUPTIONS)


def test_worked_check_gaussian_ce():
    # clean model: 29.29 % on Gaussian noise -> CE = 70.71 / 88.6428 = 79.77
    summary = robustness_summary(accuracies_from(dict(zip(BENCHMARK_CORRUPTIONS, CLEAN_RN50))), "imagenet")
    assert round(summary["gaussian_noise/ce"], 2) == 79.77
    assert round(summary["mce"], 1) == 76.7
    assert round(summary["c_top1"], 2) == 39.17
    assert round(summary["no_noise_top1"], 2) == 42.29
    assert summary["clean_top1"] == pytest.approx(76.13)
    assert summary["c_top5"] == pytest.approx(39.174 + 20, abs=1e-3)
    json.dumps(summary)  # flat, JSON-serialisable


def test_relative_mce_definition():
    errors = {c: {s: 0.5 + 0.01 * s for s in range(1, 6)} for c in BENCHMARK_CORRUPTIONS}
    expected = []
    for c in BENCHMARK_CORRUPTIONS:
        num = sum(errors[c].values()) - 5 * 0.3
        den = sum(ALEXNET_ERR_PER_SEVERITY[c]) - 5 * ALEXNET_CLEAN_ERR
        expected.append(num / den)
    assert relative_mce(errors, 0.3) == pytest.approx(100 * sum(expected) / 15)


def test_unnormalized_mce_is_100_minus_mean_accuracy():
    per = {c: 40.0 + 3.0 * i for i, c in enumerate(BENCHMARK_CORRUPTIONS)}
    acc = accuracies_from(per)
    mean_acc = sum(per.values()) / 15
    assert unnormalized_mce(error_matrix(acc)) == pytest.approx(100 - mean_acc)
    for benchmark in ("cifar", "tinyimagenet", "generated"):
        summary = robustness_summary(acc, benchmark)
        assert summary["unnormalized_mce"] == pytest.approx(100 - mean_acc)
        assert summary["c_top1"] == pytest.approx(mean_acc)
        assert "mce" not in summary and "relative_mce" not in summary
        assert summary["frost/ce"] == pytest.approx(100 - per["frost"])
        assert summary["s3_top1"] == pytest.approx(mean_acc)


def test_without_noise_excludes_exactly_the_three_noises():
    per = {c: (0.0 if c in NOISE_CORRUPTIONS else 60.0 + i) for i, c in enumerate(BENCHMARK_CORRUPTIONS)}
    per["speckle_noise"] = 0.0  # a holdout: not part of the 12
    acc = accuracies_from(per)
    kept = [per[c] for c in BENCHMARK_CORRUPTIONS if c not in NOISE_CORRUPTIONS]
    assert len(kept) == 12
    result = accuracy_without_noise(acc)
    assert result["top1"] == pytest.approx(sum(kept) / 12)
    assert result["top5"] == pytest.approx(sum(min(100, k + 20) for k in kept) / 12)


def test_holdouts_excluded_from_mce_and_reported_separately():
    base = accuracies_from({c: 100 * (1 - ALEXNET_ERR[c]) for c in BENCHMARK_CORRUPTIONS})
    holdout_acc = {c: 100 * (1 - ALEXNET_ERR[c]) / 2 for c in HOLDOUT_CORRUPTIONS}
    acc = {**base, **accuracies_from(holdout_acc)}
    summary = robustness_summary(acc, "imagenet")
    assert summary["mce"] == pytest.approx(robustness_summary(base, "imagenet")["mce"]) == pytest.approx(100.0)
    assert summary["c_top1"] == pytest.approx(robustness_summary(base, "imagenet")["c_top1"])
    assert summary["holdout_top1"] == pytest.approx(sum(holdout_acc.values()) / 4)
    expected = sum((1 - a / 100) / ALEXNET_ERR[c] for c, a in holdout_acc.items()) / 4
    assert summary["holdout_mce"] == pytest.approx(100 * expected)
    assert summary["speckle_noise/ce"] == pytest.approx(100 * (1 - holdout_acc["speckle_noise"] / 100) / 0.845388)
    assert "holdout_top1" not in robustness_summary(base, "imagenet")
    del acc["saturate/s1"], acc["saturate/s2"], acc["saturate/s3"], acc["saturate/s4"], acc["saturate/s5"]
    with pytest.warns(IncompleteBenchmarkWarning, match="saturate"):
        partial = robustness_summary(acc, "imagenet")
    assert math.isnan(partial["holdout_mce"]) and partial["mce"] == pytest.approx(100.0)


def test_missing_corruption_gives_nan_and_warning():
    per = {c: 50.0 for c in BENCHMARK_CORRUPTIONS if c != "fog"}
    with pytest.warns(IncompleteBenchmarkWarning, match="fog"):
        assert math.isnan(mce(error_matrix(accuracies_from(per))))
    with pytest.warns(IncompleteBenchmarkWarning, match="fog"):
        assert math.isnan(unnormalized_mce(error_matrix(accuracies_from(per))))
    with pytest.warns(IncompleteBenchmarkWarning, match="fog"):
        summary = robustness_summary(accuracies_from(per), "imagenet")
    assert math.isnan(summary["mce"]) and math.isnan(summary["relative_mce"]) and math.isnan(summary["no_noise_top1"])
    assert math.isnan(summary["unnormalized_mce"])
    assert summary["c_top1"] == pytest.approx(50.0)


def test_empty_and_nan_sets_are_skipped():
    acc = accuracies_from({c: 50.0 for c in BENCHMARK_CORRUPTIONS})
    acc["fog/s3"] = {"top1": 0.0, "top5": 0.0, "n": 0}  # not evaluated: must not count as 0 %
    acc["snow/s2"] = {"top1": float("nan"), "top5": float("nan"), "n": 0}
    with pytest.warns(IncompleteBenchmarkWarning, match="snow, fog"):
        summary = robustness_summary(acc, "cifar")
    assert summary["fog/top1"] == 50.0 and summary["snow/top1"] == 50.0
    del acc["clean"]
    for key in [k for k in acc if k.startswith("fog/")]:
        acc[key]["n"] = 0
    with pytest.warns(IncompleteBenchmarkWarning, match="fog"):
        summary = robustness_summary(acc, "imagenet")
    assert math.isnan(summary["mce"]) and math.isnan(summary["clean_top1"])


def test_partial_severities_use_alexnet_at_same_severities():
    errors = {c: {3: ALEXNET_ERR_PER_SEVERITY[c][2]} for c in BENCHMARK_CORRUPTIONS}
    with pytest.warns(IncompleteBenchmarkWarning, match="severities"):
        assert mce(errors) == pytest.approx(100.0)


def test_holdout_at_some_severities_is_normalised_by_alexnet_at_the_same_severities():
    errors = {c: {1: 0.4, 3: 0.6} for c in HOLDOUT_CORRUPTIONS}
    with pytest.warns(IncompleteBenchmarkWarning, match="severities"):
        holdout_mce = mce(errors, corruptions=HOLDOUT_CORRUPTIONS)
    ces = [1.0 / (ALEXNET_ERR_PER_SEVERITY[c][0] + ALEXNET_ERR_PER_SEVERITY[c][2]) for c in HOLDOUT_CORRUPTIONS]
    assert holdout_mce == pytest.approx(100 * sum(ces) / 4)
    acc = accuracies_from({c: 50.0 for c in BENCHMARK_CORRUPTIONS})
    acc.update(accuracies_from({"spatter": 40.0}, clean=None, severities=[1, 3]))
    with pytest.warns(IncompleteBenchmarkWarning):
        summary = robustness_summary(acc, "imagenet")
    assert summary["spatter/ce"] == pytest.approx(100 * 1.2 / (0.47196 + 0.75052))  # finite, not NaN


def test_mnist_summary():
    per = {c: 80.0 + i for i, c in enumerate(MNIST_C_CORRUPTIONS)}
    acc = accuracies_from(per, clean=None, severities=[1])
    acc["identity/s1"] = {"top1": 99.1, "top5": 100.0, "n": 10000}
    acc["quantize/s1"] = {"top1": 10.0, "top5": 50.0, "n": 10000}  # a leftover: reported, not averaged
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = robustness_summary(acc, "mnist")
    mean_acc = sum(per.values()) / 15
    assert summary["c_top1"] == pytest.approx(mean_acc)
    assert summary["unnormalized_mce"] == pytest.approx(100 - mean_acc)
    assert summary["clean_top1"] == pytest.approx(99.1)
    assert summary["quantize/top1"] == 10.0 and "identity/top1" not in summary
    assert "mce" not in summary and "no_noise_top1" not in summary


def test_unknown_benchmark():
    with pytest.raises(RobustnoiseError, match="unknown benchmark"):
        robustness_summary({}, "imagenet-c")


def test_one_benchmark_vocabulary_carries_preset_reader_and_metric_family():
    from robustnoise.data.released_c import RELEASED_C_KINDS

    assert {b.reader for b in Benchmark} - {None} == set(RELEASED_C_KINDS)  # every released reader, by name
    assert Benchmark("cifar100c").preset == "cifar" and Benchmark.MNIST_C.preset == "mnistc"
    assert Benchmark.GENERATED.preset is None and Benchmark.GENERATED.reader is None  # the data's preset
    assert [b for b in Benchmark if b.normalized] == [Benchmark.IMAGENET_C]
    assert Benchmark.MNIST_C.severities == (1,) and Benchmark.MNIST_C.holdouts == ()
    # the metric-family names of reports written before the enum
    assert Benchmark("imagenet") is Benchmark.IMAGENET_C and Benchmark("mnist") is Benchmark.MNIST_C
    acc = accuracies_from({c: 50.0 for c in BENCHMARK_CORRUPTIONS})
    assert robustness_summary(acc, "imagenet") == robustness_summary(acc, Benchmark.IMAGENET_C)
