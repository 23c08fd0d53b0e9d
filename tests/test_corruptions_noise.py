"""Tests of the corruption presets, the per-image seeds and streams, and the ImageNet-C noise corruptions."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from robustnoise.corruptions import (
    ALL_CORRUPTIONS,
    BENCHMARK_CORRUPTIONS,
    CORRUPTION_GROUPS,
    HOLDOUT_CORRUPTIONS,
    NOISE_CORRUPTIONS,
    PRESETS,
    corrupt,
    corruption_id,
    noise,
    rng,
    sample_seeds,
    severity_params,
)
from robustnoise.corruptions.presets import zoom_factors
from robustnoise.utils.errors import RobustnoiseError

NOISE_FAMILY = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a = a.double().flatten() - a.double().mean()
    b = b.double().flatten() - b.double().mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def _ks_statistic(samples: torch.Tensor, cdf) -> float:
    x, _ = torch.sort(samples.double().flatten())
    n = x.numel()
    f = cdf(x)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(torch.maximum(i / n - f, f - (i - 1) / n).max())


# ---------------------------------------------------------------------------------------------------------------------
# presets


def test_corruption_lists_and_groups():
    assert BENCHMARK_CORRUPTIONS == (
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "defocus_blur",
        "glass_blur",
        "motion_blur",
        "zoom_blur",
        "snow",
        "frost",
        "fog",
        "brightness",
        "contrast",
        "elastic_transform",
        "pixelate",
        "jpeg_compression",
    )
    assert BENCHMARK_CORRUPTIONS[:3] == NOISE_CORRUPTIONS
    assert HOLDOUT_CORRUPTIONS == ("speckle_noise", "gaussian_blur", "spatter", "saturate")
    assert ALL_CORRUPTIONS == BENCHMARK_CORRUPTIONS + HOLDOUT_CORRUPTIONS
    assert list(CORRUPTION_GROUPS) == ["noise", "blur", "weather", "digital", "extra"]
    flat = [name for group in CORRUPTION_GROUPS.values() for name in group]
    assert flat == list(ALL_CORRUPTIONS)  # the groups partition the list, in canonical order
    assert CORRUPTION_GROUPS["weather"] == ("snow", "frost", "fog", "brightness")
    assert corruption_id("gaussian_noise") == 0 and corruption_id("saturate") == 18


def test_presets_are_complete_and_consistent():
    assert set(PRESETS) == {"imagenet", "cifar", "tinyimagenet"}
    for table in PRESETS.values():
        assert set(table) == set(ALL_CORRUPTIONS)
        for name in ALL_CORRUPTIONS:
            values = table[name]
            assert len(values) == 5, name
            reference = PRESETS["imagenet"][name][0]
            for value in values:  # same parameter structure in every preset and severity
                assert type(value) is type(reference) or {type(value), type(reference)} <= {int, float}, name
                if isinstance(value, tuple):
                    assert len(value) == len(reference)


@pytest.mark.parametrize(
    ("preset", "name", "severity", "expected"),
    [
        ("imagenet", "gaussian_noise", 3, 0.18),
        ("imagenet", "shot_noise", 5, 3),
        ("imagenet", "impulse_noise", 4, 0.17),
        ("imagenet", "defocus_blur", 1, (3, 0.1)),
        ("imagenet", "glass_blur", 5, (1.5, 4, 2)),
        ("imagenet", "motion_blur", 3, (15, 8)),
        ("imagenet", "zoom_blur", 1, (1, 1.11, 0.01)),
        ("imagenet", "snow", 4, (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65)),
        ("imagenet", "frost", 2, (0.8, 0.6)),
        ("imagenet", "fog", 3, (2.5, 1.7)),
        ("imagenet", "brightness", 5, 0.5),
        ("imagenet", "contrast", 5, 0.05),
        ("imagenet", "elastic_transform", 1, (488, 170.8, 24.4)),
        ("imagenet", "elastic_transform", 3, (12.2, 2.44, 4.88)),
        ("imagenet", "pixelate", 5, 0.25),
        ("imagenet", "jpeg_compression", 2, 18),
        ("imagenet", "speckle_noise", 3, 0.35),
        ("imagenet", "gaussian_blur", 5, 6),
        ("imagenet", "spatter", 4, (0.65, 0.3, 1, 0.65, 1.5, 1)),
        ("imagenet", "saturate", 5, (20, 0.2)),
        ("cifar", "gaussian_noise", 5, 0.10),
        ("cifar", "shot_noise", 1, 500),
        ("cifar", "impulse_noise", 4, 0.05),
        ("cifar", "defocus_blur", 5, (1.5, 0.1)),
        ("cifar", "glass_blur", 4, (0.25, 1, 2)),
        ("cifar", "motion_blur", 5, (9, 2.5)),
        ("cifar", "zoom_blur", 4, (1, 1.21, 0.01)),
        ("cifar", "snow", 1, (0.1, 0.2, 1, 0.6, 8, 3, 0.95)),
        ("cifar", "frost", 3, (0.9, 0.4)),
        ("cifar", "fog", 1, (0.2, 3)),
        ("cifar", "brightness", 5, 0.3),
        ("cifar", "contrast", 1, 0.75),
        ("cifar", "elastic_transform", 2, (1.6, 6.4, 2.24)),
        ("cifar", "pixelate", 3, 0.85),
        ("cifar", "jpeg_compression", 5, 40),
        ("cifar", "speckle_noise", 2, 0.10),
        ("cifar", "gaussian_blur", 1, 0.4),
        ("cifar", "spatter", 1, (0.62, 0.1, 0.7, 0.7, 0.5, 0)),
        ("cifar", "saturate", 3, (1.5, 0)),
        ("tinyimagenet", "gaussian_noise", 4, 0.15),
        ("tinyimagenet", "shot_noise", 5, 15),
        ("tinyimagenet", "impulse_noise", 5, 0.14),
        ("tinyimagenet", "defocus_blur", 4, (2.5, 0.01)),
        ("tinyimagenet", "glass_blur", 5, (0.9, 2, 2)),
        ("tinyimagenet", "motion_blur", 1, (10, 1)),
        ("tinyimagenet", "zoom_blur", 5, (1, 1.26, 0.01)),
        ("tinyimagenet", "snow", 5, (0.3, 0.3, 1.25, 0.65, 14, 12, 0.6)),
        ("tinyimagenet", "frost", 5, (0.7, 0.55)),
        ("tinyimagenet", "fog", 4, (1.5, 2)),
        ("tinyimagenet", "brightness", 1, 0.1),
        ("tinyimagenet", "contrast", 3, 0.2),
        ("tinyimagenet", "elastic_transform", 5, (10.24, 1.92, 1.28)),
        ("tinyimagenet", "pixelate", 1, 0.9),
        ("tinyimagenet", "jpeg_compression", 1, 65),
        ("tinyimagenet", "speckle_noise", 5, 0.35),
        ("tinyimagenet", "gaussian_blur", 3, 1),
        ("tinyimagenet", "spatter", 5, (0.65, 0.1, 0.5, 0.67, 0.6, 1)),
        ("tinyimagenet", "saturate", 5, (30, 0.2)),
    ],
)
def test_severity_params_match_reference_tables(preset, name, severity, expected):
    assert severity_params(name, severity, preset) == expected


def test_elastic_imagenet_constants_are_the_244_multiples():
    as_written = [(2, 0.7, 0.1), (2, 0.08, 0.2), (0.05, 0.01, 0.02), (0.07, 0.01, 0.02), (0.12, 0.01, 0.02)]
    for severity, factors in enumerate(as_written, start=1):
        params = severity_params("elastic_transform", severity, "imagenet")
        assert params == pytest.approx([244 * k for k in factors], rel=1e-12)


@pytest.mark.parametrize(
    ("preset", "size", "pixels"),
    [
        ("imagenet", 224, (134, 112, 89, 67, 56)),
        ("cifar", 32, (30, 28, 27, 24, 20)),
        ("tinyimagenet", 64, (57, 51, 44, 38, 32)),
    ],
)
def test_pixelate_fractions_give_reference_sizes(preset, size, pixels):
    assert tuple(int(size * severity_params("pixelate", s, preset)) for s in range(1, 6)) == pixels


@pytest.mark.parametrize(
    ("preset", "lengths"),
    [("imagenet", (12, 16, 11, 13, 11)), ("cifar", (7, 12, 16, 21, 26)), ("tinyimagenet", (7, 12, 16, 21, 26))],
)
def test_zoom_factors_reproduce_np_arange(preset, lengths):
    for severity, length in enumerate(lengths, start=1):
        zoom = severity_params("zoom_blur", severity, preset)
        factors = zoom_factors(zoom)
        assert len(factors) == length
        np.testing.assert_array_equal(np.asarray(factors), np.arange(*zoom))
    assert zoom_factors(severity_params("zoom_blur", 1, "imagenet"))[-1] == pytest.approx(1.11)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("gausian_noise", 1, "imagenet"), "unknown corruption 'gausian_noise'; valid: gaussian_noise, shot_noise"),
        (("gaussian_noise", 0, "imagenet"), "severity must be an integer in 1..5, got 0"),
        (("gaussian_noise", 6, "imagenet"), "severity must be an integer in 1..5, got 6"),
        (("gaussian_noise", 2.0, "imagenet"), "severity must be an integer in 1..5, got 2.0"),
        (("gaussian_noise", True, "imagenet"), "severity must be an integer in 1..5, got True"),
        (("gaussian_noise", 1, "cifar10"), "unknown corruption preset 'cifar10'; valid: imagenet, cifar, tinyimagenet"),
    ],
)
def test_severity_params_errors(args, fragment):
    with pytest.raises(RobustnoiseError, match="^" + re.escape(fragment)) as info:
        severity_params(*args)
    assert "\n" not in str(info.value)


def test_severity_params_accepts_numpy_integers():
    assert severity_params("shot_noise", np.int64(2), "cifar") == 250


# ---------------------------------------------------------------------------------------------------------------------
# rng


def test_sample_seeds_deterministic_distinct_and_salted():
    idx = torch.arange(20000)
    seeds = sample_seeds(123, idx, 4, 2)
    assert seeds.dtype == torch.int64 and seeds.shape == idx.shape
    assert torch.equal(seeds, sample_seeds(123, idx, 4, 2))
    assert seeds.unique().numel() == idx.numel()
    assert (seeds < 0).any() and (seeds > 0).any()  # the full signed 64-bit range is used
    for other in (sample_seeds(124, idx, 4, 2), sample_seeds(123, idx, 4, 3), sample_seeds(123, idx, 5, 2)):
        assert not torch.isin(other, seeds).any()
    assert not torch.equal(sample_seeds(123, idx), sample_seeds(123, idx, 0))
    # Huge / negative inputs neither overflow nor fail, and an index's seed does not depend on its neighbours.
    odd = torch.tensor([-1, 2**63 - 1, -(2**63), 7], dtype=torch.int64)
    assert sample_seeds(2**64 + 5, odd, -3).tolist() == sample_seeds(5, odd, 2**64 - 3).tolist()
    assert sample_seeds(5, odd[3:], 1).item() == sample_seeds(5, torch.tensor([7]), 1).item()


@pytest.mark.exact
def test_draws_depend_only_on_own_seed_and_stream():
    seeds = sample_seeds(9, torch.arange(7))
    rate = torch.linspace(0, 80, 7 * 3 * 11 * 11).reshape(7, 3, 11, 11)
    perm = torch.tensor([3, 6, 0, 5, 1, 4, 2])
    for draw in (
        lambda s, r: rng.uniform(s, (3, 11, 11)),
        lambda s, r: rng.normal(s, (3, 11, 11), dtype=torch.float64),
        lambda s, r: rng.poisson(r, s),
    ):
        full = draw(seeds, rate)
        assert torch.equal(draw(seeds[perm], rate[perm]), full[perm])
        assert torch.equal(draw(seeds[4:5], rate[4:5]), full[4:5])
    assert not torch.equal(rng.uniform(seeds, (50,), stream=1), rng.uniform(seeds, (50,)))
    assert not torch.equal(rng.uniform(seeds[:1], (50,)), rng.uniform(seeds[1:2], (50,)))


# ---------------------------------------------------------------------------------------------------------------------
# noise corruptions


def _grey(n: int = 4, value: float = 0.5, size: int = 64, channels: int = 3, dtype=torch.float32) -> torch.Tensor:
    return torch.full((n, channels, size, size), value, dtype=dtype)


@pytest.mark.parametrize(("preset", "severities"), [("imagenet", (1, 2)), ("cifar", (1, 3, 5))])
def test_gaussian_noise_residual_std_is_sigma(preset, severities):
    x = _grey(n=3)
    for severity in severities:
        sigma = severity_params("gaussian_noise", severity, preset)
        residual = corrupt(x, "gaussian_noise", severity, preset, seed=severity) - x
        per_image_std = residual.flatten(1).std(dim=1)
        assert torch.allclose(per_image_std, torch.full_like(per_image_std, sigma), rtol=0.03)
        assert residual.mean().abs() < 5 * sigma / math.sqrt(residual.numel())


@pytest.mark.parametrize(("preset", "severity"), [("imagenet", 1), ("imagenet", 3), ("cifar", 1), ("cifar", 5)])
@pytest.mark.parametrize("level", [0.2, 0.5])
def test_shot_noise_preserves_mean_with_variance_x_over_c(preset, severity, level):
    c = severity_params("shot_noise", severity, preset)
    x = _grey(n=2, value=level, dtype=torch.float64)
    y = corrupt(x, "shot_noise", severity, preset, seed=1)
    n = y.numel()
    assert torch.allclose(y * c, (y * c).round(), atol=1e-9)  # counts / c
    assert abs(float(y.mean()) - level) < 5 * math.sqrt(level / c / n)
    assert float(y.var()) == pytest.approx(level / c, rel=5 * math.sqrt(2 / n) + 0.01)


@pytest.mark.parametrize(("preset", "severity"), [("imagenet", 1), ("imagenet", 5), ("cifar", 2)])
def test_impulse_noise_hits_a_fraction_amount_with_salt_and_pepper(preset, severity):
    amount = severity_params("impulse_noise", severity, preset)
    x = _grey(n=4)
    y = corrupt(x, "impulse_noise", severity, preset, seed=2)
    hit = y != x
    n = x.numel()
    assert abs(float(hit.double().mean()) - amount) < 5 * math.sqrt(amount * (1 - amount) / n)
    assert set(y[hit].unique().tolist()) == {0.0, 1.0}
    salt = float((y[hit] == 1).double().mean())
    assert abs(salt - 0.5) < 5 * math.sqrt(0.25 / int(hit.sum()))
    assert torch.equal(y[~hit], x[~hit])


def test_impulse_noise_channels_are_independent():
    x = _grey(n=8)
    hit = corrupt(x, "impulse_noise", 5, seed=0) != x
    both = float((hit[:, 0] & hit[:, 1]).double().mean())
    assert abs(both - 0.27**2) < 0.01  # independent hits: 0.073; shared hits would give 0.27


@pytest.mark.parametrize(("preset", "severity"), [("imagenet", 1), ("cifar", 1), ("cifar", 5), ("tinyimagenet", 2)])
def test_speckle_noise_variance_is_x2_c2(preset, severity):
    c = severity_params("speckle_noise", severity, preset)
    x = torch.cat([_grey(n=2, value=0.5), _grey(n=2, value=0.25)])
    residual = corrupt(x, "speckle_noise", severity, preset, seed=3) - x
    std = residual.flatten(1).std(dim=1)
    assert torch.allclose(std, x.flatten(1)[:, 0] * c, rtol=0.03)
    assert torch.equal(corrupt(torch.zeros(1, 3, 8, 8), "speckle_noise", severity, preset), torch.zeros(1, 3, 8, 8))


@pytest.mark.parametrize("name", NOISE_FAMILY)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_output_clamped_and_dtype_shape_device_preserved(name, dtype):
    x = torch.rand(3, 3, 20, 24, generator=torch.Generator().manual_seed(0)).to(dtype)
    y = corrupt(x, name, 5, seed=0)
    assert y.dtype == dtype and y.shape == x.shape and y.device == x.device
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert float(y.min()) == 0 and float(y.max()) == 1  # severity 5 clips some values at both ends
    assert not torch.equal(x, y)


@pytest.mark.parametrize("name", NOISE_FAMILY)
def test_grayscale_and_float64_inputs(name):
    gray = torch.rand(2, 1, 33, 35, generator=torch.Generator().manual_seed(1))
    y = corrupt(gray, name, 3, seed=5)
    assert y.shape == gray.shape and not torch.equal(y, gray)
    y64 = corrupt(gray.double(), name, 3, seed=5)
    assert y64.dtype == torch.float64
    # Same draws whatever the dtype; only rounding of the float32 arithmetic differs.
    assert torch.allclose(y64.float(), y, atol=1e-6)


@pytest.mark.exact
@pytest.mark.parametrize("name", NOISE_FAMILY)
def test_sample_result_independent_of_batch(name):
    images = torch.rand(7, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    dataset_indices = torch.arange(100, 107)
    seeds = sample_seeds(42, dataset_indices, corruption_id(name), 4)
    batch = corrupt(images, name, 4, seed=seeds)
    alone = corrupt(images[3:4], name, 4, seed=seeds[3:4])
    assert torch.equal(alone, batch[3:4])
    perm = torch.tensor([6, 3, 0, 1, 5, 2, 4])
    assert torch.equal(corrupt(images[perm], name, 4, seed=seeds[perm]), batch[perm])
    # With an int seed, image i gets sample_seeds(seed, i, corruption_id, severity).
    by_int = corrupt(images, name, 4, seed=42)
    own = sample_seeds(42, torch.tensor([5]), corruption_id(name), 4)
    assert torch.equal(by_int[5:6], corrupt(images[5:6], name, 4, seed=own))
    assert torch.equal(by_int, corrupt(images, name, 4, seed=42))
    assert not torch.equal(by_int, corrupt(images, name, 4, seed=43))


@pytest.mark.parametrize("c", [12.0, 500.0])
def test_noise_functions_are_the_documented_transforms_of_the_draws(c):
    x = torch.rand(3, 3, 16, 17, generator=torch.Generator().manual_seed(4))
    seeds = sample_seeds(1, torch.arange(3))
    shape = tuple(x.shape[1:])
    z = rng.normal(seeds, shape)
    assert torch.allclose(noise.gaussian_noise(x, 0.2, seeds), (x + z * 0.2).clamp(0, 1), atol=1e-6)
    assert torch.allclose(noise.speckle_noise(x, 0.3, seeds), (x + x * (z * 0.3)).clamp(0, 1), atol=1e-6)
    counts = rng.poisson(x.double() * c, seeds)
    assert torch.equal(noise.shot_noise(x, c, seeds), (counts / c).clamp(0, 1).float())
    u = rng.uniform(seeds, shape)
    expected = torch.where(u < 0.135, 0.0, torch.where(u < 0.27, 1.0, x))
    assert torch.equal(noise.impulse_noise(x, 0.27, seeds), expected)


@pytest.mark.parametrize("c", [3, 12.5, 60, 500])
def test_shot_noise_tables_hold_the_clipped_poisson_distribution(c):
    stats = pytest.importorskip("scipy.stats")
    entries, values = noise.shot_noise_table(float(c), torch.float64, torch.device("cpu"))
    levels, cells = entries.shape
    keep = (entries >> 11).double() / 2.0**52  # the probability of a cell's own outcome; else its alias
    implied = torch.zeros(levels, cells, dtype=torch.float64)
    implied.scatter_add_(1, torch.arange(cells).expand(levels, -1), keep / cells)
    implied.scatter_add_(1, entries & 2047, (1 - keep) / cells)
    top = math.ceil(c)
    rate = np.arange(256)[:, None] / 255 * c
    expected = np.zeros((levels, cells))
    expected[:, :top] = stats.poisson.pmf(np.arange(top), rate)
    expected[:, top] = stats.poisson.sf(top - 1, rate[:, 0])  # every count >= ceil(c) clips to 1
    np.testing.assert_allclose(implied.numpy(), expected, rtol=0, atol=1e-12)
    assert torch.equal(values[: top + 1], (torch.arange(top + 1, dtype=torch.float64) / c).clamp(max=1))


def test_shot_noise_on_the_uint8_grid_samples_the_poisson_distribution():
    stats = pytest.importorskip("scipy.stats")
    c = 12.0
    x = torch.tensor([13, 128, 255]).div(255).float().view(3, 1, 1, 1).expand(3, 3, 96, 96).contiguous()
    y = corrupt(torch.cat([x, x]), "shot_noise", 3, seed=5)  # imagenet severity 3: c = 12
    for level in range(3):
        counts = torch.bincount((y[level::3] * c).round().long().flatten(), minlength=13).double().numpy()
        pmf = stats.poisson.pmf(np.arange(13), float(x[level, 0, 0, 0]) * c)
        pmf[12] = stats.poisson.sf(11, float(x[level, 0, 0, 0]) * c)
        expected = pmf * counts.sum()
        used = expected > 5
        chi2 = float((((counts - expected) ** 2)[used] / expected[used]).sum())
        dof = int(used.sum()) - 1
        assert chi2 < dof + 5 * math.sqrt(2 * dof), (level, chi2, dof)


@pytest.mark.exact
def test_shot_noise_mixed_grid_batch_is_per_image():
    grid = torch.randint(0, 256, (3, 3, 20, 20), generator=torch.Generator().manual_seed(3)).div(255)
    off = torch.rand(2, 3, 20, 20, generator=torch.Generator().manual_seed(4))
    images = torch.cat([grid[:2], off[:1], grid[2:], off[1:]])
    seeds = sample_seeds(7, torch.arange(5))
    batch = noise.shot_noise(images, 25.0, seeds)
    for i in range(5):
        assert torch.equal(batch[i : i + 1], noise.shot_noise(images[i : i + 1], 25.0, seeds[i : i + 1]))
    counts = rng.poisson(off.double() * 25, seeds[[2, 4]])
    assert torch.equal(batch[[2, 4]], (counts / 25).clamp(0, 1).float())  # off the grid: torch.poisson
    # uint8 scaled by torchvision v2 (x * (1/255): some values an ulp off k / 255) is on the grid too.
    scaled = v2.functional.to_dtype(grid.mul(255).round().to(torch.uint8), torch.float32, scale=True)
    assert not torch.equal(scaled, grid)
    assert torch.equal(noise.shot_noise(scaled, 25.0, seeds[[0, 1, 3]]), batch[[0, 1, 3]])


def test_severities_and_corruptions_use_different_draws():
    x = _grey(n=2)
    z = {}
    for severity in (1, 2):
        sigma = severity_params("gaussian_noise", severity, "imagenet")
        z["gauss", severity] = (corrupt(x, "gaussian_noise", severity, seed=0) - x) / sigma
    z["speckle", 1] = (corrupt(x, "speckle_noise", 1, seed=0) - x) / (0.5 * severity_params("speckle_noise", 1))
    tol = 5 / math.sqrt(x.numel())
    assert abs(_corr(z["gauss", 1], z["gauss", 2])) < tol
    assert abs(_corr(z["gauss", 1], z["speckle", 1])) < tol
    # Functions called directly with the same seeds share draws (common random numbers).
    seeds = sample_seeds(0, torch.arange(2))
    assert torch.allclose(noise.gaussian_noise(x, 0.1, seeds) - x, (noise.speckle_noise(x, 0.2, seeds) - x), atol=1e-6)


def test_channels_get_independent_gaussian_noise():
    x = _grey(n=2)
    residual = corrupt(x, "gaussian_noise", 1, seed=0) - x
    assert abs(_corr(residual[:, 0], residual[:, 1])) < 5 / math.sqrt(residual[:, 0].numel())


# ---------------------------------------------------------------------------------------------------------------------
# api validation


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"name": "gaussian"}, "unknown corruption 'gaussian'; valid:"),
        ({"severity": 0}, "severity must be an integer in 1..5"),
        ({"preset": "mnist"}, "unknown corruption preset 'mnist'"),
        ({"images": torch.rand(3, 8, 8)}, "images must be a float tensor (N, C, H, W)"),
        ({"images": torch.zeros(1, 3, 8, 8, dtype=torch.uint8)}, "images must be a float tensor"),
        ({"images": torch.full((1, 3, 8, 8), 255.0)}, "images must have values in [0, 1]"),
        ({"images": torch.full((1, 3, 8, 8), float("nan"))}, "images must have values in [0, 1]"),
        ({"images": torch.full((1, 3, 8, 8), -float("nan"))}, "images must have values in [0, 1]"),
        ({"images": torch.full((1, 3, 8, 8), -1e-45)}, "images must have values in [0, 1]"),
        ({"images": torch.full((1, 3, 8, 8), 1.0000001)}, "images must have values in [0, 1]"),
        ({"seed": torch.zeros(3, dtype=torch.int64)}, "seed tensor must be int64 of shape (2,)"),
        ({"seed": torch.zeros(2, dtype=torch.int32)}, "seed tensor must be int64"),
        ({"seed": 1.5}, "seed must be an int or an int64 tensor"),
    ],
)
def test_corrupt_validation(kwargs, fragment):
    args = {"images": torch.rand(2, 3, 8, 8), "name": "gaussian_noise", "severity": 1, "preset": "imagenet", "seed": 0}
    args.update(kwargs)
    with pytest.raises(RobustnoiseError) as info:
        corrupt(**args)
    assert str(info.value).startswith(fragment) and "\n" not in str(info.value)


def test_corrupt_accepts_numpy_integer_seed_and_severity():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(corrupt(x, "shot_noise", np.int64(2), seed=np.int64(7)), corrupt(x, "shot_noise", 2, seed=7))


def test_corrupt_accepts_both_zeros_and_one():  # the int32 bit-pattern check of registry.check_images, and its fallback
    for x in (torch.full((1, 3, 8, 8), -0.0), torch.tensor([[[[0.0, -0.0], [1.0, 0.5]]]])):
        assert torch.equal(corrupt(x, "contrast", 1), corrupt(x.abs(), "contrast", 1))


def test_empty_batch():
    assert corrupt(torch.zeros(0, 3, 8, 8), "shot_noise", 2).shape == (0, 3, 8, 8)


# ---------------------------------------------------------------------------------------------------------------------
# distribution-level parity with imagecorruptions (test oracle, optional)


@pytest.fixture(scope="module")
def astronaut_224() -> np.ndarray:
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    image = Image.fromarray(skdata.astronaut()).resize((256, 256), Image.BILINEAR)  # torchvision Resize(256)
    left = (256 - 224) // 2
    return np.array(image.crop((left, left, left + 224, left + 224)))  # CenterCrop(224)


@pytest.mark.parametrize("name", NOISE_FAMILY)
@pytest.mark.parametrize("severity", [1, 3, 5])
def test_statistics_match_imagecorruptions(astronaut_224, name, severity):
    oracle = pytest.importorskip("imagecorruptions")
    clean = astronaut_224
    np.random.seed(severity)
    extra = {"seed": severity} if name == "impulse_noise" else {}
    expected = oracle.corrupt(clean, severity=severity, corruption_name=name, **extra)
    x = torch.from_numpy(clean.copy()).permute(2, 0, 1)[None].double() / 255
    ours = corrupt(x, name, severity, "imagenet", seed=severity)[0].permute(1, 2, 0).numpy()
    ours = np.uint8(np.clip(ours, 0, 1) * 255)  # the oracle's float -> uint8 truncation

    def stats(out: np.ndarray) -> tuple[float, float, float]:
        diff = out.astype(np.float64) - clean
        return diff.mean(), diff.std(), float(np.mean((out == 0) | (out == 255)))

    (m_ref, s_ref, c_ref), (m, s, c) = stats(expected), stats(ours)
    n = clean.size
    # Independent draws: allow ~5 standard errors of the difference of two estimates.
    assert abs(m - m_ref) < 5 * math.sqrt(2) * s_ref / math.sqrt(n) + 0.1, (m, m_ref)
    assert s == pytest.approx(s_ref, rel=0.02)
    assert abs(c - c_ref) < 5 * math.sqrt(2 * c_ref * (1 - c_ref) / n) + 0.002, (c, c_ref)
