"""Tests of the blur corruptions (Gaussian, defocus, zoom, motion, glass) and the shared filters.

Parity is checked against the ``imagecorruptions`` oracle (``imagecorruptions-imaug``) at the ImageNet-C preset on real
photographs, after the oracle's own uint8 conversion (truncation). Measured numbers: ``docs/parity/blur.md``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from robustnoise.corruptions import PRESETS, corrupt, filters, rng, sample_seeds, severity_params, weather
from robustnoise.corruptions import blur as blur_mod
from robustnoise.corruptions.presets import zoom_factors
from robustnoise.corruptions.registry import CORRUPTION_FNS, lookup
from tests.conftest import assert_images_close

BLUR = ("gaussian_blur", "defocus_blur", "zoom_blur", "motion_blur", "glass_blur")
DETERMINISTIC = ("gaussian_blur", "defocus_blur", "zoom_blur")
SEVERITIES = (1, 2, 3, 4, 5)

# Parity tolerances on the 0..255 scale, after uint8 truncation of both results.
MEAN_TOL = 0.5  # mean |difference|
MAX_TOL = 1  # largest |difference|: rounding at truncation boundaries only

imagecorruptions = pytest.importorskip("imagecorruptions")
skdata = pytest.importorskip("skimage.data")
sktransform = pytest.importorskip("skimage.transform")
skmetrics = pytest.importorskip("skimage.metrics")


# ---------------------------------------------------------------------------------------------------------------------
# helpers


def _photo(image: np.ndarray, size: int) -> np.ndarray:
    """Centre square crop resized to size x size, uint8 (RGB or grayscale)."""
    h, w = image.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    out = sktransform.resize(
        image[top : top + s, left : left + s], (size, size), anti_aliasing=True, preserve_range=True
    )
    return np.round(out).astype(np.uint8)


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """astronaut, chelsea, coffee: 224 x 224 RGB uint8."""
    return [_photo(f(), 224) for f in (skdata.astronaut, skdata.chelsea, skdata.coffee)]


@pytest.fixture(scope="module")
def gray_photo() -> np.ndarray:
    return _photo(skdata.camera(), 224)


def _to_tensor(images: list[np.ndarray], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """uint8 HWC (or HW) arrays -> (N, C, H, W) float in [0, 1]."""
    arrays = [a[..., None] if a.ndim == 2 else a for a in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(dtype) / 255.0


def _to_uint8(batch: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> uint8 (N, H, W, C) by the oracle's conversion: clip, * 255, truncate."""
    return np.uint8(np.clip(batch.permute(0, 2, 3, 1).double().numpy(), 0, 1) * 255)


def _oracle(image: np.ndarray, name: str, severity: int, **kwargs) -> np.ndarray:
    """The oracle's result as (H, W, C); grayscale input gives channel 0 (the oracle stacks it to RGB)."""
    out = imagecorruptions.corrupt(image, corruption_name=name, severity=severity, **kwargs)
    return out[..., :1] if image.ndim == 2 else out


def _diff(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    d = np.abs(a.astype(np.int64) - b.astype(np.int64))
    return float(d.mean()), int(d.max())


def _seeds(n: int, salt: int = 0) -> torch.Tensor:
    return sample_seeds(7, torch.arange(n), salt)


# ---------------------------------------------------------------------------------------------------------------------
# registry and API


def test_blur_family_is_registered():
    for name in BLUR:
        entry = lookup(name, "cifar")
        assert entry.family == "blur" and CORRUPTION_FNS[name] is entry.fn is getattr(blur_mod, name)
    x = torch.rand(2, 3, 32, 32)
    for name in BLUR:
        a = corrupt(x, name, 3, preset="cifar", seed=5)
        assert torch.equal(a, corrupt(x, name, 3, preset="cifar", seed=5))
        assert a.shape == x.shape and not torch.equal(a, x)


# ---------------------------------------------------------------------------------------------------------------------
# parity with the oracle (ImageNet-C parameters, 224 px photographs)


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_parity_with_oracle(name, photos, gray_photo):
    rgb, gray = _to_tensor(photos), _to_tensor([gray_photo])
    worst = (0.0, 0)
    for severity in SEVERITIES:
        param = severity_params(name, severity)
        ours = _to_uint8(CORRUPTION_FNS[name](rgb, param, _seeds(3)))
        ours_gray = _to_uint8(CORRUPTION_FNS[name](gray, param, _seeds(1)))[0]
        for i, photo in enumerate(photos):
            mean, mx = _diff(ours[i], _oracle(photo, name, severity))
            assert mean <= MEAN_TOL and mx <= MAX_TOL, (name, severity, i, mean, mx)
            worst = max(worst, (mean, mx))
        mean, mx = _diff(ours_gray, _oracle(gray_photo, name, severity))
        assert mean <= MEAN_TOL and mx <= MAX_TOL, (name, severity, "gray", mean, mx)
        worst = max(worst, (mean, mx))
    print(f"{name}: worst mean |diff| {worst[0]:.4f}, max {worst[1]}")


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_float32_close_to_float64(name, photos):
    x = _to_tensor(photos[:1])
    param = severity_params(name, 3)
    a = CORRUPTION_FNS[name](x, param, _seeds(1))
    b = CORRUPTION_FNS[name](x.float(), param, _seeds(1))
    assert b.dtype == torch.float32
    assert float((a - b.double()).abs().max()) < 1e-5


def test_motion_parity_with_injected_angles(photos, gray_photo):
    """Same angles as the oracle's ``np.random.uniform(-45, 45)`` (re-seeded), one batch with a different angle per
    image; plus a grayscale image and a 32 px image where the larger shifts hit the reference's early ``break``."""
    rgb = _to_tensor(photos)
    worst = (0.0, 0)
    for severity in SEVERITIES:
        radius, sigma = severity_params("motion_blur", severity)
        cases = [(photo, 100 * severity + i) for i, photo in enumerate([*photos, gray_photo])]
        angles, expected = [], []
        for photo, seed in cases:
            np.random.seed(seed)
            angles.append(np.random.uniform(-45, 45))
            np.random.seed(seed)
            expected.append(_oracle(photo, "motion_blur", severity))
        ours = _to_uint8(blur_mod.motion_blur_angles(rgb, radius, sigma, torch.tensor(angles[:3])).clamp(0, 1))
        ours_gray = _to_uint8(
            blur_mod.motion_blur_angles(_to_tensor([gray_photo]), radius, sigma, torch.tensor(angles[3:])).clamp(0, 1)
        )
        for got, want in zip([*ours, ours_gray[0]], expected):
            mean, mx = _diff(got, want)
            assert mean <= MEAN_TOL and mx <= MAX_TOL, (severity, mean, mx)
            worst = max(worst, (mean, mx))
    small = _photo(skdata.coffee(), 32)
    for angle in (-44.0, -7.5, 0.0, 30.0):
        reference = imagecorruptions.corruptions._motion_blur(small, radius=20, sigma=15, angle=angle)
        ours = _to_uint8(blur_mod.motion_blur_angles(_to_tensor([small]), 20, 15, torch.tensor([angle])).clamp(0, 1))[0]
        mean, mx = _diff(ours, np.uint8(np.clip(reference, 0, 255)))
        assert mean <= MEAN_TOL and mx <= MAX_TOL, (angle, mean, mx)
    print(f"motion_blur: worst mean |diff| {worst[0]:.4f}, max {worst[1]}")


@functools.cache
def _numba_glass_draws():
    """A numba function making the same ``np.random.seed`` and ``randint`` calls, in the same order, as the oracle's
    numba loop (numba's generator is separate from numpy's), recording (dx, dy) per scanned pixel."""
    numba = pytest.importorskip("numba")

    @numba.njit(cache=False)
    def draws(d0, d1, d, iters, s):
        np.random.seed(s)
        out = np.zeros((iters, d0 - 2 * d, d1 - 2 * d, 2), np.int64)
        for i in range(iters):
            for h in range(d0 - d, d, -1):
                for w in range(d1 - d, d, -1):
                    dx, dy = np.random.randint(-d, d, size=(2,))
                    out[i, h - d - 1, w - d - 1, 0] = dx
                    out[i, h - d - 1, w - d - 1, 1] = dy
        return out

    return draws


def _oracle_glass_offsets(height: int, width: int, max_delta: int, iterations: int, seed: int) -> np.ndarray:
    """The offsets the oracle draws for ``seed``: (iterations, H - 2d, W - 2d, 2) = (dx, dy)."""
    return _numba_glass_draws()(height, width, max_delta, iterations, seed)


def test_glass_parity_with_oracle_offsets(photos):
    worst = (0.0, 0, 0.0)
    for severity in SEVERITIES:
        sigma, delta, iterations = severity_params("glass_blur", severity)
        for i, photo in enumerate(photos[severity % 3 : severity % 3 + 1] if severity < 5 else photos):
            seed = 1000 + 10 * severity + i
            offsets = torch.from_numpy(_oracle_glass_offsets(224, 224, delta, iterations, seed))[None]
            ours = blur_mod._glass_blur(_to_tensor([photo]), sigma, delta, offsets[..., 0], offsets[..., 1])
            got = _to_uint8(ours.clamp(0, 1))[0]
            want = _oracle(photo, "glass_blur", severity, seed=seed)
            mean, mx = _diff(got, want)
            differing = float((got != want).mean())
            assert differing <= 1e-4 and mx <= MAX_TOL, (severity, i, mean, mx, differing)
            worst = max(worst, (mean, mx, differing))
    print(f"glass_blur: worst mean |diff| {worst[0]:.6f}, max {worst[1]}, differing fraction {worst[2]:.2e}")


def _mean_ssim(clean: np.ndarray, corrupted: list[np.ndarray]) -> float:
    gray = clean.mean(-1)
    return float(np.mean([skmetrics.structural_similarity(gray, c.mean(-1), data_range=255) for c in corrupted]))


@pytest.mark.parametrize(("name", "draws", "tol"), [("motion_blur", 16, 0.07), ("glass_blur", 4, 0.01)])
def test_random_corruptions_match_oracle_in_distribution(name, draws, tol, photos):
    """Mean SSIM to the clean image with our own draws vs the oracle's, per severity (one photo, ``draws`` draws each;
    the tolerances are about 4 standard errors of the difference: motion blur's SSIM varies a lot with the angle)."""
    photo = photos[0]
    x = _to_tensor([photo], torch.float32).expand(draws, -1, -1, -1)
    for severity in SEVERITIES:
        seeds = sample_seeds(11, torch.arange(draws), severity)
        ours = list(_to_uint8(CORRUPTION_FNS[name](x, severity_params(name, severity), seeds)))
        theirs = []
        for j in range(draws):
            np.random.seed(500 + 37 * severity + j)
            kwargs = {"seed": 500 + 37 * severity + j} if name == "glass_blur" else {}
            theirs.append(_oracle(photo, name, severity, **kwargs))
        a, b = _mean_ssim(photo, ours), _mean_ssim(photo, theirs)
        assert abs(a - b) <= tol, (name, severity, a, b)


def test_motion_angles_are_uniform_from_rng():
    seeds = sample_seeds(3, torch.arange(2000), 5)
    x = torch.rand(4, 1, 36, 36, dtype=torch.float64)
    radius, sigma = severity_params("motion_blur", 2)
    angles = rng.uniform(seeds[:4], (1,), stream=blur_mod._MOTION_ANGLE_STREAM, dtype=torch.float64)[:, 0] * 90 - 45
    blurred = blur_mod.motion_blur_angles(x, radius, sigma, angles).clamp(0, 1)
    ours = blur_mod.motion_blur(x, (radius, sigma), seeds[:4])
    assert torch.equal(ours, (blurred * 255).round() / 255)  # ImageMagick's 8-bit PNG output: rounded
    # against the numpy port's truncation, rounding is ~0.5 grey level brighter on average
    truncated = torch.floor(blurred * 255)
    assert 0.4 < float((ours * 255 - truncated).mean()) < 0.6
    all_angles = rng.uniform(seeds, (1,), stream=blur_mod._MOTION_ANGLE_STREAM, dtype=torch.float64)[:, 0] * 90 - 45
    u = torch.sort((all_angles + 45) / 90).values
    ks = float(torch.max(torch.abs(u - torch.arange(1, len(u) + 1, dtype=torch.float64) / len(u))))
    assert ks < 1.63 / math.sqrt(len(u))  # Kolmogorov-Smirnov at the 1% level
    assert -45 < float(all_angles.min()) < -44 and 44 < float(all_angles.max()) < 45


# ---------------------------------------------------------------------------------------------------------------------
# glass blur internals


def _sequential_glass(x: np.ndarray, dx: np.ndarray, dy: np.ndarray, d: int) -> np.ndarray:
    """The reference loop, literally (numpy views make the "swap" a one-way copy)."""
    x = x.copy()
    h_size, w_size = x.shape[:2]
    for it in range(dx.shape[0]):
        for h in range(h_size - d, d, -1):
            for w in range(w_size - d, d, -1):
                ox, oy = dx[it, h - d - 1, w - d - 1], dy[it, h - d - 1, w - d - 1]
                x[h, w], x[h + oy, w + ox] = x[h + oy, w + ox], x[h, w]
    return x


@pytest.mark.parametrize(("height", "width", "d", "iterations"), [(11, 13, 1, 2), (14, 12, 2, 3), (17, 19, 3, 2)])
def test_glass_scan_equals_sequential_reference(height, width, d, iterations):
    gen = torch.Generator().manual_seed(height * width + d)
    n = 3
    dx = torch.randint(-d, d, (n, iterations, height - 2 * d, width - 2 * d), generator=gen)
    dy = torch.randint(-d, d, (n, iterations, height - 2 * d, width - 2 * d), generator=gen)
    index = blur_mod._glass_scan_map(dx, dy, height, width, d)
    pixels = np.arange(height * width).reshape(height, width, 1).repeat(2, axis=2)  # (H, W, C) views per pixel
    for i in range(n):
        want = _sequential_glass(pixels, dx[i].numpy(), dy[i].numpy(), d)[..., 0].reshape(-1)
        assert np.array_equal(index[i].numpy(), want)
    assert bool((index >= 0).all()) and bool((index < height * width).all())


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_glass_offsets_are_uniform_and_reproducible(d):
    seeds = sample_seeds(1, torch.arange(4), 4)
    dx, dy = blur_mod._glass_offsets(seeds, d, 2, 60, 70)
    assert dx.shape == (4, 2, 60, 70) and int(dx.min()) == -d and int(dx.max()) == d - 1
    assert int(dy.min()) == -d and int(dy.max()) == d - 1
    counts = torch.bincount(((dy + d) * 2 * d + (dx + d)).flatten(), minlength=4 * d * d).double()
    expected = counts.sum() / (4 * d * d)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    dof = 4 * d * d - 1
    assert chi2 < dof + 5 * math.sqrt(2 * dof)
    again = blur_mod._glass_offsets(seeds[2:3], d, 2, 60, 70)
    assert torch.equal(again[0], dx[2:3]) and torch.equal(again[1], dy[2:3])


def test_glass_on_images_smaller_than_the_offsets():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    out = blur_mod.glass_blur(x, (1.5, 4, 2), _seeds(2))  # no scanned pixels: blur, quantise, blur
    # float32 truncation adds 2**-14 grey levels first (blur.py); without it a value a hair below a level flips
    sigma_only = filters.gaussian_filter(torch.floor(filters.gaussian_filter(x, 1.5) * 255 + 2**-14) / 255, 1.5)
    assert torch.allclose(out, sigma_only.clamp(0, 1), atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# small-image presets


def _sharpness(x: torch.Tensor) -> float:
    """Mean squared horizontal + vertical gradient."""
    return float(x.diff(dim=-1).pow(2).mean() + x.diff(dim=-2).pow(2).mean())


@pytest.mark.parametrize(("preset", "size"), [("cifar", 32), ("tinyimagenet", 64)])
def test_small_presets_are_valid_and_blur_grows_with_severity(preset, size):
    x = _to_tensor([_photo(f(), size) for f in (skdata.astronaut, skdata.coffee)], torch.float32)
    for name in BLUR:
        outs = [corrupt(x, name, s, preset=preset, seed=0) for s in SEVERITIES]
        for out in outs:
            assert out.shape == x.shape and out.dtype == x.dtype
            assert bool(torch.isfinite(out).all()) and float(out.min()) >= 0 and float(out.max()) <= 1
            assert float((out - x).abs().mean()) > 1e-4
        sharp = [_sharpness(o) for o in outs]
        if name in DETERMINISTIC:  # strictly more blur at every step
            assert sharp[0] < _sharpness(x) and all(a > b for a, b in zip(sharp, sharp[1:])), (name, sharp)
        elif name == "motion_blur":  # random angles: the trend holds end to end
            assert sharp[0] < _sharpness(x) and sharp[-1] < sharp[0], (name, sharp)
        else:  # glass (a pixel shuffle that can sharpen): a larger sigma at equal (d, iterations) blurs more
            table = PRESETS[preset][name]
            pairs = [
                (i, j) for i in range(5) for j in range(5) if table[i][1:] == table[j][1:] and table[i][0] < table[j][0]
            ]
            assert pairs
            for i, j in pairs:
                assert sharp[j] < sharp[i], (name, i, j, sharp)


def test_small_presets_use_their_own_tables():
    """The cifar / tinyimagenet rows reach the blurs (the table values themselves: test_corruptions_noise.py)."""
    x = _to_tensor([_photo(skdata.astronaut(), 32)])
    sigma = PRESETS["cifar"]["gaussian_blur"][0]
    assert torch.equal(corrupt(x, "gaussian_blur", 1, "cifar"), filters.gaussian_filter(x, sigma).clamp(0, 1))
    radius, alias = PRESETS["tinyimagenet"]["defocus_blur"][3]
    y = _to_tensor([_photo(skdata.astronaut(), 64)])
    kernel = blur_mod.defocus_kernel(radius, alias)
    assert torch.allclose(corrupt(y, "defocus_blur", 4, "tinyimagenet"), filters.correlate2d(y, kernel).clamp(0, 1))
    factors = zoom_factors(PRESETS["cifar"]["zoom_blur"][4])
    assert len(factors) == 26  # np.arange(1, 1.26, 0.01): 1.00 ... 1.25
    want = x.clone()  # the mean of the image and its clipped zooms, each by bilinear interpolation
    for z in factors:
        top, length = weather._zoom_crop(32, z)
        want += weather._clipped_zoom(x[..., top : top + length, top : top + length], z, 32, 32)
    want = (want / (len(factors) + 1)).clamp(0, 1)
    assert torch.allclose(corrupt(x, "zoom_blur", 5, "cifar"), want, atol=1e-12)


def test_zoom_centre_trim_agrees_with_top_left_trim_for_all_tables():
    """ImageNet-C trims the zoomed crop at the centre, imagecorruptions at the top-left: identical when the zoomed
    crop is at most one pixel larger than the image, which holds for every table and size used."""
    for preset, size in (("imagenet", 224), ("cifar", 32), ("tinyimagenet", 64), ("imagenet", 32), ("imagenet", 299)):
        for zoom in PRESETS[preset]["zoom_blur"]:
            for z in zoom_factors(zoom):
                crop = math.ceil(size / z)
                assert 0 <= int(round(crop * z)) - size <= 1, (preset, size, z)


# ---------------------------------------------------------------------------------------------------------------------
# seeding, batching, dtypes, devices


@pytest.mark.parametrize("name", BLUR)
@pytest.mark.parametrize(("preset", "severity"), [("tinyimagenet", 3), ("imagenet", 5)])
def test_image_result_does_not_depend_on_its_batch(name, preset, severity, monkeypatch):
    """The same alone, in a batch, at any position and across CPU chunk boundaries, to float rounding (imagenet
    severity 5 covers the GEMM, FFT and sparse paths)."""
    monkeypatch.setattr(blur_mod, "_CHUNK_ELEMENTS", 2 * 3 * 40 * 40)  # chunks of 2 images: results cross chunks
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 40, 40, generator=gen)
    seeds = sample_seeds(9, torch.arange(5), 1)
    param = severity_params(name, severity, preset)
    fn = CORRUPTION_FNS[name]
    batch = fn(x, param, seeds)
    for i in range(5):  # GEMM / FFT / sparse kernels change with the batch shape: equal to float rounding
        assert_images_close(fn(x[i : i + 1], param, seeds[i : i + 1]), batch[i : i + 1], (name, i))
    perm = torch.tensor([3, 0, 4, 2, 1])
    assert_images_close(fn(x[perm], param, seeds[perm]), batch[perm])
    if name not in DETERMINISTIC:  # other seeds, other draws
        assert not torch.equal(fn(x, param, seeds + 1), batch)


@pytest.mark.parametrize("name", BLUR)
def test_dtypes_channels_and_clipping(name):
    param = severity_params(name, 2, "cifar")
    seeds = _seeds(2)
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        x = torch.rand(2, 3, 32, 32).to(dtype)
        out = CORRUPTION_FNS[name](x, param, seeds)
        assert out.dtype == dtype and out.shape == x.shape and out.device == x.device
        assert float(out.min()) >= 0 and float(out.max()) <= 1
    ref = CORRUPTION_FNS[name](torch.rand(2, 3, 32, 32), param, seeds)
    assert ref.is_contiguous()
    for channels in (1, 4):
        x = torch.rand(2, channels, 33, 31)
        out = CORRUPTION_FNS[name](x, param, seeds)
        assert out.shape == x.shape
    one = CORRUPTION_FNS[name](torch.ones(2, 3, 32, 32), param, seeds)
    assert float(one.max()) <= 1 and float(one.min()) >= 1 - 1e-6  # a flat image stays flat; nothing exceeds 1
    rgb = torch.rand(1, 3, 32, 32)
    per_channel = torch.cat([CORRUPTION_FNS[name](rgb[:, c : c + 1], param, seeds[:1]) for c in range(3)], 1)
    assert torch.allclose(CORRUPTION_FNS[name](rgb, param, seeds[:1]), per_channel, atol=1e-6)


def test_non_contiguous_input_and_errors():
    x = torch.rand(3, 32, 32, 2).permute(3, 0, 1, 2)  # (2, 3, 32, 32), channels-last strides
    for name in BLUR:
        param = severity_params(name, 1, "cifar")
        assert torch.equal(
            CORRUPTION_FNS[name](x, param, _seeds(2)),
            CORRUPTION_FNS[name](x.contiguous(), param, _seeds(2)),
        )
        with pytest.raises(ValueError):
            CORRUPTION_FNS[name](x, param, _seeds(3))
        with pytest.raises(ValueError):
            CORRUPTION_FNS[name](x[0], param, _seeds(2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", BLUR)
def test_cuda_matches_cpu(name):
    x = torch.rand(3, 3, 48, 48, dtype=torch.float64)
    param = severity_params(name, 3, "tinyimagenet")
    cpu = CORRUPTION_FNS[name](x, param, _seeds(3))
    gpu = CORRUPTION_FNS[name](x.cuda(), param, _seeds(3).cuda())
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-9)


# ---------------------------------------------------------------------------------------------------------------------
# filters


@pytest.mark.parametrize(
    ("mode", "numpy_mode"),
    [
        ("replicate", "edge"),
        ("reflect", "reflect"),
        ("symmetric", "symmetric"),
        ("circular", "wrap"),
        ("constant", "constant"),
    ],
)
def test_pad2d_matches_numpy_for_any_width(mode, numpy_mode):
    x = np.random.default_rng(0).random((2, 3, 9, 7))
    for pads in [(1, 2, 3, 0), (20, 11, 15, 30)]:
        got = filters.pad2d(torch.from_numpy(x), *pads, mode=mode).numpy()
        want = np.pad(x, ((0, 0), (0, 0), pads[:2], pads[2:]), mode=numpy_mode)
        assert np.array_equal(got, want)


def test_gaussian_filter_matches_scipy_all_methods():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = np.random.default_rng(1).random((2, 2, 40, 37))
    for sigma in (0.4, 1.5, 6.0):
        want = ndimage.gaussian_filter(x, (0, 0, sigma, sigma), mode="nearest", truncate=4.0)
        kernel = filters.gaussian_kernel1d(sigma)
        for method in ("direct", "matmul"):
            got = filters.correlate1d(
                filters.correlate1d(torch.from_numpy(x), kernel, -2, method=method), kernel, -1, method=method
            )
            assert np.abs(got.numpy() - want).max() < 1e-12, (sigma, method)
        got = filters.gaussian_filter(torch.from_numpy(x), sigma, method="dense")  # the filter matrices
        assert np.abs(got.numpy() - want).max() < 1e-12, (sigma, "dense")
    for mode, scipy_mode in (("reflect", "mirror"), ("symmetric", "reflect"), ("circular", "wrap")):
        want = ndimage.gaussian_filter(x, (0, 0, 2.0, 2.0), mode=scipy_mode)
        for method in ("auto", "dense"):
            got = filters.gaussian_filter(torch.from_numpy(x), 2.0, mode=mode, method=method).numpy()
            assert np.abs(got - want).max() < 1e-12, (mode, method)
    with pytest.raises(ValueError, match="method"):
        filters.gaussian_filter(torch.from_numpy(x), 2.0, method="fft")


@pytest.mark.parametrize("mode", filters.BORDER_MODES)
def test_correlate1d_gemm_folds_every_border_mode(mode):
    """The GEMM path reads no padded copy (the border is folded into its edge blocks): equal to the shifted slices."""
    x = torch.from_numpy(np.random.default_rng(4).random((2, 3, 70, 45)))
    for sigma in (0.8, 3.0, 12.0):  # 7 taps; 25; 97, wider than the image
        kernel = filters.gaussian_kernel1d(sigma)
        for dim in (-1, -2):
            want = filters.correlate1d(x, kernel, dim, mode, method="direct")
            got = filters.correlate1d(x, kernel, dim, mode, method="matmul")
            assert torch.allclose(got, want, rtol=0, atol=1e-12), (sigma, dim)


def test_correlate2d_and_opencv_kernels_match_opencv():
    cv2 = pytest.importorskip("cv2")
    kernel = np.random.default_rng(3).random((9, 7))
    for shape in ((3, 30, 26), (1, 200, 170)):  # both FFT paths: below and above 2^15 values per padded plane
        x = np.random.default_rng(2).random(shape)
        want = np.stack([cv2.filter2D(p, -1, kernel) for p in x])
        for method in ("direct", "fft"):
            got = filters.correlate2d(torch.from_numpy(x), torch.from_numpy(kernel), method=method).numpy()
            assert np.abs(got - want).max() < 1e-12, (shape, method)
    for ksize, sigma in ((3, 0.5), (5, 0.1), (5, 0.5)):
        want_g = cv2.getGaussianKernel(ksize, sigma, ktype=cv2.CV_64F)[:, 0]
        assert np.allclose(filters.opencv_gaussian_kernel1d(ksize, sigma).numpy(), want_g, rtol=1e-12, atol=1e-15)
    for preset in ("imagenet", "cifar", "tinyimagenet"):
        for radius, alias in PRESETS[preset]["defocus_blur"]:
            want_k = imagecorruptions.corruptions.disk(radius, alias_blur=alias, dtype=np.float64)
            assert np.allclose(blur_mod.defocus_kernel(radius, alias).numpy(), want_k, rtol=1e-9, atol=1e-15)
