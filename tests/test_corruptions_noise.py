"""Tests of the corruption presets, the counter-based RNG and the noise corruptions (ImageNet-C noise family)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from torch.special import ndtr

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


def _lowbias32_unsigned(x: int) -> int:
    mask = 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & mask
    x ^= x >> 15
    x = (x * 0x846CA68B) & mask
    return x ^ (x >> 16)


def test_int64_hash_equals_unsigned_32bit_reference():
    values = [0, 1, 2, 255, 65535, 65536, 2**31 - 1, 2**31, 0xDEADBEEF, 2**32 - 1]
    values += torch.randint(0, 2**32, (1000,), generator=torch.Generator().manual_seed(0)).tolist()
    expected = [_lowbias32_unsigned(v) for v in values]
    assert rng._mix32_(torch.tensor(values, dtype=torch.int64)).tolist() == expected
    assert [rng._mix32_int(v) for v in values] == expected
    assert expected[1] != 1 and len(set(expected)) == len(values)


def _word_reference(counter: int, mult: int, offset: int) -> int:
    """The documented word: r = lowbias32(H(c) m + a mod 2**32) with H(c) = lowbias32(c ^ tag), then r, or
    r ^ 0xFFFF0000 when r >= 2**31."""
    hashed = _lowbias32_unsigned(counter ^ rng._TAG_COUNTER)
    r = _lowbias32_unsigned((hashed * (mult & 0xFFFFFFFF) + (offset & 0xFFFFFFFF)) & 0xFFFFFFFF)
    return r if r < 2**31 else r ^ 0xFFFF0000


def _words(keys, n_samples: int, count: int) -> torch.Tensor:
    out = torch.empty(n_samples, count, dtype=torch.int32)
    return rng._words_into(out, torch.empty_like(out), rng._counters(count, torch.device("cpu")), keys)


def test_int32_word_hash_equals_python_reference():
    gen = torch.Generator().manual_seed(1)
    mult = torch.randint(-(2**31), 2**31, (5, 1), generator=gen).to(torch.int32) | 1
    offset = torch.randint(-(2**31), 2**31, (5, 1), generator=gen).to(torch.int32)
    counters = torch.cat([torch.arange(1037), torch.tensor([2**31 - 1, 2**30, 123456789])]).to(torch.int32)
    out = torch.empty(5, len(counters), dtype=torch.int32)  # 1040 columns: vector body and scalar tail
    words = rng._words_into(out, torch.empty_like(out), rng._counter_hashes(counters).unsqueeze(0), (mult, offset))
    assert torch.equal(rng._counters(1037, torch.device("cpu")), rng._counter_hashes(counters[:1037]).unsqueeze(0))
    expected = [
        [_word_reference(c, m, a) for c in counters.tolist()]
        for m, a in zip(mult.view(-1).tolist(), offset.view(-1).tolist())
    ]
    assert words.tolist() == expected
    assert [rng._word_int(c, m, a) for c in (0, 7, 2**31 - 1) for m, a in [(mult[0].item(), offset[0].item())]] == [
        expected[0][0],
        expected[0][7],
        expected[0][1037],
    ]
    # Element by element (keys gathered per element, as for the later Poisson rounds): the same words.
    rows = torch.arange(5).repeat_interleave(len(counters))
    assert torch.equal(rng._words_at((mult, offset), rows, counters.repeat(5)), words.view(-1))


def test_key_derivation_paths_agree(monkeypatch):
    seeds = sample_seeds(3, torch.arange(20))
    streams = [rng._absorb(rng._TAG_NORMAL, 7, 0), 12345]
    monkeypatch.setattr(rng, "_PYTHON_KEYS", 4)
    tensor_keys = rng._stream_keys(seeds, streams)  # 20 samples: int64 tensor ops
    for i in range(0, 20, 4):  # 4 samples: Python ints
        for (m, a), (m_small, a_small) in zip(tensor_keys, rng._stream_keys(seeds[i : i + 4], streams)):
            assert torch.equal(m[i : i + 4], m_small) and torch.equal(a[i : i + 4], a_small)
    for j, key in enumerate(streams):
        m, a = tensor_keys[j]
        assert [(int(m[i]), int(a[i])) for i in range(20)] == [rng._key_pair_int(int(s), key) for s in seeds]
        assert bool((m & 1).eq(1).all())  # odd multipliers
    idx = torch.tensor([0, 5, 2**40, -3])
    assert torch.equal(sample_seeds(9, idx, 1, 2), sample_seeds(9, torch.cat([idx, torch.arange(100, 120)]), 1, 2)[:4])


def test_word_bits_are_fair_and_independent():
    """Bit-independence check of the words of raw consecutive seeds: every bit is fair, and no bit predicts a bit of
    the word at the next counter, 64 counters on, in the next sample, or another bit of the same word."""
    n_samples, count = 128, 1089
    words = _words(
        rng._keys(torch.arange(n_samples, dtype=torch.int64), rng._absorb(rng._TAG_UNIFORM, 0)), n_samples, count
    )
    bits = ((words.unsqueeze(-1) >> torch.arange(31, dtype=torch.int32)) & 1).float()  # (samples, counters, 31)
    n = n_samples * (count - 64)
    tol = 5.5 / math.sqrt(n)  # ~5.5 sigma: 961 bit pairs per matrix

    def corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = a.reshape(-1, 31).double(), b.reshape(-1, 31).double()
        a, b = a - a.mean(0), b - b.mean(0)
        return (a.T @ b) / (a.norm(dim=0)[:, None] * b.norm(dim=0)[None, :])

    freq = bits.double().mean(dim=(0, 1))
    assert float((freq - 0.5).abs().max()) < 5 * 0.5 / math.sqrt(n_samples * count)
    assert float(corr(bits[:, :-64], bits[:, 1:-63]).abs().max()) < tol  # counter c vs c + 1
    assert float(corr(bits[:, :-64], bits[:, 64:]).abs().max()) < tol  # counter c vs c + 64
    assert float(corr(bits[:-1, :-64], bits[1:, :-64]).abs().max()) < tol  # sample s vs s + 1
    within = corr(bits[:, :-64], bits[:, :-64]) - torch.eye(31, dtype=torch.float64)
    assert float(within.abs().max()) < tol


def test_samples_are_not_shifted_copies_of_each_other():
    # With words h(c ^ key), samples whose keys differ by d would repeat each other's words at counter ^ d; with
    # h(c * m + a), samples with equal multipliers and offsets that differ by 5 m would be shifted by 5. Hashing the
    # counter first leaves only chance coincidences of 31-bit words.
    n_samples, count = 64, 4096
    keys = rng._keys(sample_seeds(0, torch.arange(n_samples)), 1)
    m, a = keys[0][:1], keys[1][:1]
    keys = (torch.cat([keys[0], m, m]), torch.cat([keys[1], a + m * 5, a + 1]))  # plus two adversarial samples
    words = _words(keys, n_samples + 2, count)
    n = words.numel()
    expected = n * n / 2 / 2**31  # 16 chance coincidences
    assert n - words.unique().numel() < expected + 6 * math.sqrt(expected)


@pytest.mark.parametrize("mult", [1, 3, 2**16 + 1, 2**8 + 1, -(2**31) + 1, -1])
def test_structured_multipliers_are_not_weak(mult):
    # Used directly on the counter (offset 0), m = 3 gives 11-sigma and m = 2**16 + 1 140-sigma correlations between
    # the bits of words 1, 2 or 64 counters apart; the counter hash removes them.
    words = _words((torch.tensor([[mult]], dtype=torch.int32), torch.tensor([[0]], dtype=torch.int32)), 1, 1 << 15)
    bits = ((words[0].unsqueeze(-1) >> torch.arange(31, dtype=torch.int32)) & 1).double()
    n = len(bits) - 64
    for lag in (1, 2, 64):
        x, y = bits[:n] - bits[:n].mean(0), bits[lag : n + lag] - bits[lag : n + lag].mean(0)
        corr = (x.T @ y) / (x.norm(dim=0)[:, None] * y.norm(dim=0)[None, :])
        assert float(corr.abs().max()) < 5.5 / math.sqrt(n), lag
    assert float((bits.mean(0) - 0.5).abs().max()) < 5 * 0.5 / math.sqrt(len(bits))


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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uniform_range_moments_and_ks(dtype):
    seeds = sample_seeds(0, torch.arange(500))
    u = rng.uniform(seeds, (2000,), dtype=dtype)
    assert u.shape == (500, 2000) and u.dtype == dtype
    assert float(u.min()) > 0.0 and float(u.max()) < 1.0
    n = u.numel()
    assert abs(float(u.double().mean()) - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(float(u.double().var()) - 1 / 12) < 5 * math.sqrt(1 / 180 / n)
    assert _ks_statistic(u[:, :200], lambda x: x) < 1.95 / math.sqrt(100_000)  # alpha = 0.001


def test_uniform_transform_of_extreme_words():
    words = torch.tensor([[0, 1, 255, 256, 2**30, 2**31 - 2, 2**31 - 1]], dtype=torch.int32)
    u64 = rng._to_unit(words.clone(), torch.empty(words.shape, dtype=torch.float64))
    u32 = rng._to_unit(words.clone(), torch.empty(words.shape, dtype=torch.float32))
    assert torch.equal(u64, (words.double() + 0.5) / 2**31)
    assert torch.equal(u32.double(), (torch.div(words, 256, rounding_mode="floor").double() + 0.5) / 2**23)
    assert float(u64.min()) > 0 and float(u64.max()) < 1
    assert float(u32.min()) == 2.0**-24 and float(u32.max()) == 1 - 2.0**-24
    assert torch.all((u32.double() - u64).abs() <= 2.0**-24)
    u = rng.uniform(sample_seeds(0, torch.arange(4000)), (1000,))
    assert float(u.max()) <= 1 - 2.0**-24 and float(u.min()) > 0


def test_normal_moments_and_ks():
    seeds = sample_seeds(1, torch.arange(400))
    z = rng.normal(seeds, (3, 17, 17), dtype=torch.float64).flatten()  # odd per-sample count: uses the last cosine
    n = z.numel()
    assert abs(float(z.mean())) < 5 / math.sqrt(n)
    assert abs(float(z.var()) - 1) < 5 * math.sqrt(2 / n)
    assert abs(float((z**3).mean())) < 5 * math.sqrt(15 / n)
    assert abs(float((z**4).mean()) - 3) < 5 * math.sqrt(96 / n)
    assert _ks_statistic(z[:100_000], ndtr) < 1.95 / math.sqrt(100_000)
    z32 = rng.normal(seeds, (3, 17, 17))
    assert z32.dtype == torch.float32 and torch.allclose(z32.double().flatten(), z, atol=1e-6)


def test_streams_seeds_and_neighbours_are_uncorrelated():
    seeds = torch.arange(1000, dtype=torch.int64)  # raw consecutive seeds: the hardest case for a weak mixer
    u0 = rng.uniform(seeds, (1000,), stream=0, dtype=torch.float64)
    u1 = rng.uniform(seeds, (1000,), stream=1, dtype=torch.float64)
    z0 = rng.normal(seeds, (1000,), stream=0, dtype=torch.float64)
    tol = 5 / math.sqrt(1e6)
    assert abs(_corr(u0, u1)) < tol  # streams
    assert abs(_corr(u0, z0)) < tol  # different kinds of draw on the same stream
    assert abs(_corr(u0[:-1], u0[1:])) < tol * 1.01  # neighbouring seeds
    assert abs(_corr(u0[:, :-1], u0[:, 1:])) < tol * 1.01  # neighbouring elements
    assert abs(_corr(z0[:, 0::2], z0[:, 1::2])) < tol * 1.5  # the cosine and sine of one Box-Muller pair
    assert not torch.equal(u0, u1)


def test_draws_depend_only_on_own_seed():
    seeds = sample_seeds(9, torch.arange(7))
    rate = torch.linspace(0, 80, 7 * 3 * 11 * 11).reshape(7, 3, 11, 11)  # both Poisson samplers
    perm = torch.tensor([3, 6, 0, 5, 1, 4, 2])
    for draw in (
        lambda s, r: rng.uniform(s, (3, 11, 11)),
        lambda s, r: rng.normal(s, (3, 11, 11)),
        lambda s, r: rng.bernoulli(0.3, s, (3, 11, 11)),
        lambda s, r: rng.poisson(r, s),
    ):
        full = draw(seeds, rate)
        assert torch.equal(draw(seeds[perm], rate[perm]), full[perm])
        assert torch.equal(draw(seeds[4:5], rate[4:5]), full[4:5])
        assert torch.equal(draw(seeds[2:4], rate[2:4]), full[2:4])


def test_draws_do_not_depend_on_blocking_or_key_path(monkeypatch):
    seeds = sample_seeds(3, torch.arange(5))
    gen = torch.Generator().manual_seed(0)
    # Rows 0-2: mostly table rates (< 64) with a few PTRS ones; rows 3-4 the other way round; so blocks of both kinds.
    rate = torch.rand(5, 333, generator=gen, dtype=torch.float64) * 60
    rate[:3] += (torch.rand(3, 333, generator=gen) < 0.2) * 300.0
    rate[3:] += (torch.rand(2, 333, generator=gen) < 0.8) * 300.0
    images = torch.rand(5, 3, 7, 11, generator=gen)

    def draws() -> list[torch.Tensor]:
        out = [rng.uniform(seeds, (333,)), rng.uniform(seeds, (333,), dtype=torch.float64), rng.normal(seeds, (333,))]
        out += [rng.bernoulli(0.3, seeds, (333,)), rng.poisson(rate, seeds), rng.poisson(rate.float(), seeds)]
        out += [noise.gaussian_noise(images, 0.2, seeds), noise.speckle_noise(images, 0.3, seeds)]
        out += [noise.impulse_noise(images, 0.2, seeds), noise.shot_noise(images, 12, seeds)]
        return out + [noise.shot_noise(images, 500, seeds)]

    before = draws()
    for chunk, python_keys in ((97, 8), (1000, 0), (7, 100), (1 << 20, 8)):
        monkeypatch.setattr(rng, "_CPU_CHUNK", chunk)
        monkeypatch.setattr(rng, "_PYTHON_KEYS", python_keys)
        for a, b in zip(before, draws()):
            assert torch.equal(a, b), (chunk, python_keys)


def test_bernoulli_frequency_with_tensor_probability():
    seeds = sample_seeds(2, torch.arange(200))
    p = torch.tensor([0.0, 0.05, 0.5, 1.0]).reshape(4, 1)
    b = rng.bernoulli(p, seeds, (4, 500))
    assert set(b.unique().tolist()) <= {0.0, 1.0}
    freq = b.mean(dim=(0, 2))
    n = 200 * 500
    assert float(freq[0]) == 0.0 and float(freq[3]) == 1.0
    assert abs(float(freq[1]) - 0.05) < 5 * math.sqrt(0.05 * 0.95 / n)
    assert abs(float(freq[2]) - 0.5) < 5 * math.sqrt(0.25 / n)


@pytest.mark.parametrize("lam", [0.5, 3.0, 12.0, 60.0, 500.0])
def test_poisson_mean_and_variance(lam):
    seeds = sample_seeds(5, torch.arange(500))
    x = rng.poisson(torch.full((500, 400), lam), seeds).double()
    n = x.numel()
    assert torch.equal(x, x.round()) and float(x.min()) >= 0
    assert abs(float(x.mean()) - lam) < 5 * math.sqrt(lam / n)
    assert abs(float(x.var()) - lam) < 5 * math.sqrt((2 * lam**2 + lam) / n)


@pytest.mark.parametrize("lam", [3.0, 10.0, 60.0])
def test_poisson_pmf_chi_square(lam):
    seeds = sample_seeds(6, torch.arange(400))
    x = rng.poisson(torch.full((400, 500), lam, dtype=torch.float64), seeds).long().flatten()
    n = x.numel()
    ks = torch.arange(0, int(lam + 12 * math.sqrt(lam) + 10))
    pmf = torch.distributions.Poisson(torch.tensor(lam, dtype=torch.float64)).log_prob(ks.double()).exp()
    keep = pmf * n >= 20
    lo, hi = int(ks[keep].min()), int(ks[keep].max())
    expected = torch.cat([pmf[:lo].sum()[None], pmf[lo : hi + 1], (1 - pmf[: hi + 1].sum())[None]]) * n
    counts = torch.bincount(x.clamp(lo - 1, hi + 1) - (lo - 1), minlength=hi - lo + 3).double()
    if lo == 0:  # no lower tail bin
        expected, counts = expected[1:], counts[1:]
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    df = len(counts) - 1
    critical = df * (1 - 2 / (9 * df) + 4.0 * math.sqrt(2 / (9 * df))) ** 3  # Wilson-Hilferty, z = 4
    assert chi2 < critical, (chi2, critical, df)


def _inversion_reference(rate: float, u: float) -> int:
    """Sequential-search inversion: min{k : u <= F(k)}, F accumulated as pmf_k = pmf_{k-1} * (rate / k)."""
    k, pmf = 0, math.exp(-rate)
    cdf = pmf
    while u > cdf:
        k += 1
        pmf *= rate / k
        cdf += pmf
    return k


def _ptrs_reference(lam: float, rounds) -> float:
    """Scalar transcription of Hoermann's (1993) PTRS with the paper's constants (same float operations)."""
    b = math.sqrt(lam) * 2.53 + 0.931
    a = b * 0.02483 - 0.059
    inv_alpha = (1 / (b - 3.4)) * 1.1328 + 1.1239
    v_r = (1 / (b - 2)) * -3.6224 + 0.9277
    for u, v in rounds:
        u -= 0.5
        us = 0.5 - abs(u)
        k = math.floor(((2 * a) / us + b) * u + (lam + 0.43))
        if us >= 0.07 and v <= v_r:
            return float(k)
        if k < 0 or (us < 0.013 and v > us):
            continue
        if math.log(v * inv_alpha / (a / (us * us) + b)) <= k * math.log(lam) - lam - math.lgamma(k + 1):
            return float(k)
    return float(math.floor(lam))


def test_poisson_equals_scalar_reference_on_the_same_words():
    """Every count equals a scalar reference computed from the documented words: below 64, sequential inversion of
    floor(rate) and of its fraction with the two 31-bit uniforms u_a, u_b; from 64, PTRS round by round."""
    n_samples, per_sample, stream = 6, 1500, 3
    seeds = sample_seeds(8, torch.arange(n_samples))
    gen = torch.Generator().manual_seed(0)
    rate = torch.cat(
        [
            torch.rand(5000, generator=gen, dtype=torch.float64) * 64,
            torch.randint(0, 64, (600,), generator=gen).double(),  # integer rates
            torch.randint(0, 64 * 64, (600,), generator=gen).double() / 64,  # on the fraction grid
            torch.tensor([0.0, 63.999, 64.0, 1e-9, 1 - 1e-12] * 20, dtype=torch.float64),
            64 + torch.rand(2700, generator=gen, dtype=torch.float64) ** 2 * 800,
        ]
    )
    rate = rate[torch.randperm(len(rate), generator=gen)].reshape(n_samples, per_sample)
    got = rng.poisson(rate, seeds, stream=stream).flatten().tolist()

    def word(seed: int, counter: int, *stream_words: int) -> int:
        return _word_reference(counter, *rng._key_pair_int(seed, rng._absorb(*stream_words)))

    def rounds(seed: int, counter: int):
        for r in range(rng._PTRS_MAX_ROUNDS):
            u = word(seed, counter, rng._TAG_POISSON_PTRS, stream, r, 0)
            v = word(seed, counter, rng._TAG_POISSON_PTRS, stream, r, 1)
            yield (u + 0.5) / 2**31, (v + 0.5) / 2**31

    fine = (1 << 20) - 1
    for i, lam in enumerate(rate.flatten().tolist()):
        seed, counter = int(seeds[i // per_sample]), i % per_sample
        if lam >= 64:
            assert got[i] == _ptrs_reference(lam, rounds(seed, counter)), (i, lam)
            continue
        w = word(seed, counter, rng._TAG_POISSON_TABLE, stream, 0)
        w_a = (w >> 20 << 20) | (word(seed, counter, rng._TAG_POISSON_TABLE, stream, 1) & fine)
        w_b = ((w >> 9) & 2047) << 20 | (word(seed, counter, rng._TAG_POISSON_TABLE, stream, 2) & fine)
        g = math.floor(lam)
        expected = _inversion_reference(g, (w_a + 0.5) / 2**31) + _inversion_reference(lam - g, (w_b + 0.5) / 2**31)
        assert got[i] == expected, (i, lam)


def test_poisson_phase_two_reproduces_the_tables():
    # The exact search (phase 2) gives the table's value wherever the table decides.
    x = torch.rand(4, 3000, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    seeds = sample_seeds(1, torch.arange(4))
    sampler = rng._PoissonSampler(x, 63.9, seeds, 0)
    table = torch.cat([counts.reshape(-1).clone() for *_, counts in sampler.blocks()])
    positions, counts = sampler.finish()
    assert 0 < len(positions) < 0.06 * x.numel()
    table.index_copy_(0, positions, counts)
    exact = sampler._table_exact(torch.arange(x.numel()), x.reshape(-1) * 63.9)
    assert torch.equal(exact, table)


def test_poisson_fallback_after_all_rounds_reject(monkeypatch):
    monkeypatch.setattr(rng, "_PTRS_MAX_ROUNDS", 0)
    rate = torch.tensor([[64.5, 99.9, 3.0]], dtype=torch.float64)
    x = rng.poisson(rate, sample_seeds(0, torch.arange(1)))
    assert x[0, :2].tolist() == [64.0, 99.0]  # floor(rate), the mode; the tables (rate < 64) are unaffected
    assert x[0, 2] == x[0, 2].round()


def test_poisson_edge_cases():
    seeds = sample_seeds(0, torch.arange(2))
    assert torch.equal(rng.poisson(torch.zeros(2, 50), seeds), torch.zeros(2, 50))
    x = rng.poisson(torch.full((2, 5), 1e5, dtype=torch.float64), seeds)
    assert x.dtype == torch.float64 and ((x - 1e5).abs() < 3000).all()
    with pytest.raises(ValueError, match="non-negative"):
        rng.poisson(torch.full((2, 3), -1.0), seeds)
    with pytest.raises(ValueError, match="finite"):
        rng.poisson(torch.tensor([[1.0, float("nan")], [1.0, 2.0]]), seeds)
    with pytest.raises(ValueError, match="shape"):
        rng.poisson(torch.ones(3, 3), seeds)
    with pytest.raises(TypeError):
        rng.uniform(seeds.int(), (3,))


def test_poisson_tables_agree_with_the_cdf():
    stats = pytest.importorskip("scipy.stats")
    tables = rng._PoissonTables.get(torch.device("cpu"))
    cells, columns = 1 << rng._CELL_BITS, rng._TABLE_COLUMNS
    thresholds = tables.integer_thresholds.view(64, columns).double()
    for g in (0, 1, 5, 17, 63):
        cdf = stats.poisson.cdf(np.arange(columns), g)
        assert np.allclose((thresholds[g].numpy() + 0.5) / 2**31, cdf, rtol=0, atol=2**-31 + 1e-13)
    gen = torch.Generator().manual_seed(0)
    span = 1 << rng._FINE_BITS
    integer, fraction = tables.integer.view(64, cells), tables.fraction.view(64, cells)
    assert 0.002 < float((integer < 0).double().mean()) < 0.03 and float((fraction < 0).double().mean()) < 0.03
    for _ in range(300):  # a decided cell has that count for every uniform in it
        g, j, cell = (int(torch.randint(0, n, (), generator=gen)) for n in (64, 64, cells))
        ends = ((cell * span + 0.5) / 2**31, ((cell + 1) * span - 0.5) / 2**31)
        if integer[g, cell] >= 0:
            assert all(_inversion_reference(g, u) == integer[g, cell] for u in ends)
        if fraction[j, cell] >= 0:
            r = (j + float(torch.rand((), generator=gen))) / 64
            assert all(_inversion_reference(r, u) == fraction[j, cell] for u in ends)
    k = torch.arange(0, 5000, dtype=torch.float64)
    assert torch.allclose(rng._log_factorial(k), torch.lgamma(k + 1), rtol=1e-14, atol=1e-13)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_and_cuda_draws_agree():
    """Words, uniforms, Bernoulli draws and seeds are bit-identical; normals (device float32 log/cos/sin) agree to a
    few ulps; Poisson counts are identical unless a uniform falls within ~1e-15 of a decision boundary."""
    seeds = sample_seeds(11, torch.arange(6))
    rate = torch.linspace(0, 600, 6 * 2000).reshape(6, 2000)
    images = torch.rand(6, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    for dtype in (torch.float32, torch.float64):
        assert torch.equal(
            rng.uniform(seeds, (999,), dtype=dtype), rng.uniform(seeds.cuda(), (999,), dtype=dtype).cpu()
        )
    assert torch.equal(rng.bernoulli(0.3, seeds, (999,)), rng.bernoulli(0.3, seeds.cuda(), (999,)).cpu())
    assert torch.allclose(rng.normal(seeds, (999,)), rng.normal(seeds.cuda(), (999,)).cpu(), rtol=1e-5, atol=1e-5)
    assert torch.equal(rng.poisson(rate, seeds), rng.poisson(rate.cuda(), seeds).cpu())
    assert torch.equal(sample_seeds(1, torch.arange(9)), sample_seeds(1, torch.arange(9, device="cuda")).cpu())
    for name in NOISE_FAMILY:
        cpu, cuda = corrupt(images, name, 3, seed=4), corrupt(images.cuda(), name, 3, seed=4).cpu()
        assert (
            torch.allclose(cpu, cuda, atol=1e-5) if "gaussian" in name or "speckle" in name else torch.equal(cpu, cuda)
        )


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
    assert torch.equal(noise.gaussian_noise(x, 0.2, seeds), (x + z * 0.2).clamp(0, 1))
    assert torch.allclose(noise.speckle_noise(x, 0.3, seeds), (x + x * (z * 0.3)).clamp(0, 1), atol=1e-6)
    counts = rng.poisson(x.double() * c, seeds)
    assert torch.equal(noise.shot_noise(x, c, seeds), (counts / c).clamp(0, 1).float())
    u = rng.uniform(seeds, shape, dtype=torch.float64)
    expected = torch.where(u < 0.135, 0.0, torch.where(u < 0.27, 1.0, x.double())).float()
    assert torch.equal(noise.impulse_noise(x, 0.27, seeds), expected)


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


def test_corrupt_reports_an_unimplemented_corruption(monkeypatch):
    from robustnoise.corruptions import registry

    monkeypatch.delitem(registry.CORRUPTION_FNS, "snow")  # every corruption is implemented now: simulate a missing one
    with pytest.raises(RobustnoiseError) as info:
        corrupt(torch.rand(2, 3, 8, 8), "snow", 1)
    assert str(info.value).startswith(
        "corruption 'snow' is not implemented yet; implemented: gaussian_noise, shot_noise"
    )


def test_corrupt_accepts_numpy_integer_seed_and_severity():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(corrupt(x, "shot_noise", np.int64(2), seed=np.int64(7)), corrupt(x, "shot_noise", 2, seed=7))


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
