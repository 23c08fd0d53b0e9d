"""Tests of the MNIST-C corruptions (``robustnoise.corruptions.mnist_c``) on real digits.

Oracles: scikit-image (``transform.warp``, ``feature.canny``, the HSV round trip, ``filters.gaussian``), SciPy, the
``imagecorruptions`` motion-blur port, and small numpy re-implementations of the MNIST-C algorithms written here from
their description (sequential glass-blur swaps, line / dotted line / zigzag), fed the same draws. Measured numbers and
tolerances: ``docs/parity/mnist_c.md``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from robustnoise.corruptions import blur, corrupt, rng, sample_seeds, weather
from robustnoise.corruptions import mnist_c as mc
from robustnoise.corruptions.fidelity import release_fidelity
from robustnoise.corruptions.presets import MNIST_C_CORRUPTIONS
from robustnoise.corruptions.registry import lookup
from robustnoise.corruptions.transforms import image_seeds
from robustnoise.data import load_digit_images
from robustnoise.utils.errors import RobustnoiseError
from tests.conftest import assert_quantized_close

skfeature = pytest.importorskip("skimage.feature")
skfilters = pytest.importorskip("skimage.filters")
sktransform = pytest.importorskip("skimage.transform")
skcolor = pytest.importorskip("skimage.color")

CANONICAL = (
    "shot_noise",
    "impulse_noise",
    "glass_blur",
    "motion_blur",
    "shear",
    "scale",
    "rotate",
    "brightness",
    "translate",
    "stripe",
    "fog",
    "spatter",
    "dotted_line",
    "zigzag",
    "canny_edges",
)
RANDOM = ("shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "rotate", "translate", "fog", "spatter",
          "dotted_line", "zigzag")  # fmt: skip

WARP_MEAN_TOL = 1e-6  # float32 images vs scikit-image's float64 warp: mean |diff| (measured ~1e-8)
WARP_MAX_TOL64 = 1e-12  # float64 images: max |diff| (measured 0)
CANNY_TOL = 1e-3  # fraction of differing pixels allowed vs skimage.feature.canny (measured 0)


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    """The 1797 scikit-learn digits at 28 px, on the 1/255 grid (like MNIST), float32 (N, 1, 28, 28)."""
    x, _ = load_digit_images(28)
    return torch.round(x * 255) / 255


def _seeds(n: int, salt: int = 0) -> torch.Tensor:
    return sample_seeds(11, torch.arange(n), salt)


# ---------------------------------------------------------------------------------------------------------------------
# registry, API, errors


def _mc(images: torch.Tensor, name: str, seed: int | torch.Tensor = 0) -> torch.Tensor:
    return corrupt(images, name, 1, preset="mnistc", seed=seed)


def test_names_order_and_registry():
    assert MNIST_C_CORRUPTIONS == CANONICAL
    assert [lookup(name, "mnistc").family for name in CANONICAL] == ["mnistc"] * 15


def test_unknown_name_lists_the_15(digits):
    with pytest.raises(RobustnoiseError) as info:
        _mc(digits[:2], "gaussian_noise")
    assert all(name in str(info.value) for name in CANONICAL)
    with pytest.raises(RobustnoiseError, match="unknown MNIST-C corruption"):
        corrupt(digits[:2], "snow", 1, preset="mnistc")


def test_bad_inputs(digits):
    with pytest.raises(RobustnoiseError, match="seed tensor"):
        _mc(digits[:3], "shear", torch.zeros(2, dtype=torch.int64))
    with pytest.raises(RobustnoiseError, match="seed must be"):
        _mc(digits[:3], "shear", 1.5)
    with pytest.raises(RobustnoiseError, match="float tensor"):
        _mc((digits[:3] * 255).to(torch.uint8), "shear")
    assert _mc(digits[:0], "fog").shape == (0, 1, 28, 28)


def test_public_api(digits):
    x = digits[:8]
    out = corrupt(x, "shear", 1, preset="mnistc")
    assert out.shape == x.shape and not torch.equal(out, x)
    assert torch.equal(out, corrupt(x, "shear", 1, preset="mnistc", seed=sample_seeds(0, torch.arange(8), 1004, 1)))


# ---------------------------------------------------------------------------------------------------------------------
# every corruption: range, shape, dtype, determinism, batch independence


@pytest.mark.parametrize("name", CANONICAL)
def test_valid_output(digits, name):
    x = digits[:24]
    for dtype in (torch.float32, torch.float64):
        out = _mc(x.to(dtype), name, 3)
        assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
        assert bool(torch.isfinite(out).all()) and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        assert float((out - x.to(dtype)).abs().mean()) > 1e-3  # it corrupts something
    rounded = release_fidelity(_mc(x, name, 3), "mnistc")
    assert torch.equal(rounded * 255, torch.round(rounded * 255))
    assert float((rounded - _mc(x, name, 3)).abs().max()) <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize("name", CANONICAL)
def test_deterministic_and_batch_independent(digits, name):
    n = 20
    x = digits[100 : 100 + n]
    seeds = _seeds(n, salt=MNIST_C_CORRUPTIONS.index(name))
    full = _mc(x, name, seeds)
    assert torch.equal(full, _mc(x, name, seeds))
    order = torch.tensor([13, 2, 7, 19, 0])
    part = _mc(x[order], name, seeds[order])  # other batch shapes: float rounding, then 8 bits
    assert_quantized_close(part, full[order])
    assert_quantized_close(_mc(x[5:6], name, seeds[5:6])[0], full[5])
    # an int seed is the per-image seeding of CorruptedDataset / Corrupt (index i -> image_seeds(seed, i, name, 1))
    by_int = _mc(x, name, 4)
    assert torch.equal(by_int, _mc(x, name, image_seeds(4, torch.arange(n), name, 1)))
    if name in RANDOM:
        assert not torch.equal(by_int, _mc(x, name, 5))


def test_other_sizes_and_channels():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 32, 40, generator=g)
    for name in CANONICAL:
        out = _mc(x, name, 1)
        assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1, name
    gray = torch.rand(4, 1, 28, 28, generator=g)  # identical channels stay identical (same draws per channel)
    for name in ("glass_blur", "shear", "translate", "fog", "spatter", "zigzag", "canny_edges", "motion_blur"):
        out = _mc(gray.expand(-1, 3, -1, -1), name, 2)
        assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2]), name
        assert torch.allclose(out[:, :1], _mc(gray, name, 2), atol=1e-6), name


# ---------------------------------------------------------------------------------------------------------------------
# geometric corruptions vs skimage.transform.warp


def _mnist_c_affine(linear: np.ndarray) -> sktransform.AffineTransform:
    """MNIST-C's inverse map: linear part ``linear`` plus the translation that fixes the centre (13.5, 13.5)."""
    (a1, a2), (b1, b2) = linear
    matrix = np.array([[a1, a2, 13.5 * (1 - a1 - a2)], [b1, b2, 13.5 * (1 - b1 - b2)], [0, 0, 1]])
    return sktransform.AffineTransform(matrix=matrix)


def _warp_candidates(name: str) -> list[sktransform.AffineTransform]:
    if name == "shear":  # AffineTransform(shear=c) of scikit-image < 0.20: [[1, -sin c], [0, cos c]]
        return [_mnist_c_affine(np.array([[1, -math.sin(c)], [0, math.cos(c)]])) for c in (-0.4, 0.4)]
    if name == "rotate":
        return [_mnist_c_affine(sktransform.AffineTransform(rotation=c).params[:2, :2]) for c in (-0.4, 0.4)]
    return [_mnist_c_affine(sktransform.AffineTransform(scale=(1 / 0.7, 1 / 0.7)).params[:2, :2])]


@pytest.mark.parametrize("name", ["shear", "rotate", "scale"])
def test_affine_vs_skimage_warp(digits, name):
    x = digits[:48]
    seeds = _seeds(48)
    ours32 = lookup(name, "mnistc").fn(x, None, seeds)[:, 0].numpy()
    ours64 = lookup(name, "mnistc").fn(x.double(), None, seeds)[:, 0].numpy()
    images = x[:, 0].double().numpy()
    refs = [np.stack([sktransform.warp(im, inverse_map=t) for im in images]) for t in _warp_candidates(name)]
    refs = [np.clip(ref, 0, 1) for ref in refs]
    errors = np.stack([np.abs(ours64 - ref).max(axis=(1, 2)) for ref in refs])  # (candidates, N)
    which = errors.argmin(0)
    assert float(errors.min(0).max()) <= WARP_MAX_TOL64
    ref = np.stack([refs[k][i] for i, k in enumerate(which)])
    assert float(np.abs(ours32 - ref).mean()) <= WARP_MEAN_TOL
    if name != "scale":
        assert set(which.tolist()) == {0, 1}  # both signs occur
        # the sign is the per-image draw: (u < 1/2 -> -1)
        signs = mc._random_signs(seeds, 1)[:, 0]
        assert which.tolist() == (signs > 0).long().tolist()


def test_shear_uses_the_2019_skimage_convention():
    matrix = mc.shear_matrices(torch.tensor([1.0]))[0].numpy()
    assert np.allclose(matrix[:, :2], [[1, -math.sin(0.4)], [0, math.cos(0.4)]], atol=1e-15)
    assert np.allclose(matrix[:, 2], [13.5 * math.sin(0.4), 13.5 * (1 - math.cos(0.4))], atol=1e-13)


def test_translate_exact_shift_with_zero_fill(digits):
    x = digits[:64]
    out = _mc(x, "translate", _seeds(64))
    seen = set()
    for i in range(len(x)):
        hits = []
        for sy in (-3, 3):
            for sx in (-3, 3):
                expected = torch.zeros_like(x[i])  # out[r, c] = x[r + sy, c + sx], zero outside
                rows, cols = slice(max(0, -sy), 28 - max(0, sy)), slice(max(0, -sx), 28 - max(0, sx))
                src_rows, src_cols = slice(max(0, sy), 28 + min(0, sy)), slice(max(0, sx), 28 + min(0, sx))
                expected[:, rows, cols] = x[i, :, src_rows, src_cols]
                if torch.equal(out[i], expected):
                    hits.append((sy, sx))
        assert len(hits) >= 1, i
        seen.update(hits)
    assert seen == {(-3, -3), (-3, 3), (3, -3), (3, 3)}


# ---------------------------------------------------------------------------------------------------------------------
# deterministic pixel maps


def test_stripe_exact(digits):
    x = digits[:16]
    out = _mc(x, "stripe", 0)
    expected = x.clone()
    expected[..., :7] = 1 - x[..., :7]
    expected[..., 21:] = 1 - x[..., 21:]
    assert torch.equal(out, expected)
    assert torch.equal(out[..., 7:21], x[..., 7:21])


def test_brightness_exact(digits):
    x = digits[:32]
    images = x[:, 0].double().numpy()
    ref = []
    for im in images:  # MNIST-C: gray -> RGB -> HSV, V += 0.5 (clipped), -> RGB -> gray
        hsv = skcolor.rgb2hsv(skcolor.gray2rgb(im))
        hsv[..., 2] = np.clip(hsv[..., 2] + 0.5, 0, 1)
        ref.append(np.clip(skcolor.rgb2gray(skcolor.hsv2rgb(hsv)), 0, 1))
    ref = np.stack(ref)
    assert float(np.abs(_mc(x.double(), "brightness")[:, 0].numpy() - ref).max()) <= 1e-12
    assert float(np.abs(_mc(x, "brightness")[:, 0].numpy() - ref).max()) <= 1e-6
    assert torch.equal(_mc(x, "brightness"), (x + 0.5).clamp(0, 1))


def test_canny_vs_skimage(digits):
    """All 1797 digits, plus noisy versions (many weak edges: exercises non-maximum suppression and hysteresis)."""
    g = torch.Generator().manual_seed(0)
    noisy = (digits.double() + 0.2 * torch.randn(digits.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    for batch in (digits, noisy[:600]):
        ours = _mc(batch, "canny_edges")[:, 0].numpy() > 0.5
        ref = np.stack([skfeature.canny(im) for im in batch[:, 0].double().numpy()])
        fraction = float((ours != ref).mean())
        print(f"canny: {fraction:.2e} of pixels differ ({int((ours != ref).sum())} px, {int(ref.sum())} edge px)")
        assert fraction < CANNY_TOL
    out = _mc(digits[:8], "canny_edges")
    assert set(out.unique().tolist()) <= {0.0, 1.0}


# ---------------------------------------------------------------------------------------------------------------------
# glass blur


def _glass_reference(image: np.ndarray, chosen: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """MNIST-C glass blur on a 2-D image with given draws: row-only blur (2-D image with a channel axis), uint8,
    sequential true swaps in reverse raster order over rows and columns 27..2, row-only blur, clip."""
    a = np.uint8(skfilters.gaussian(image, sigma=0.7, channel_axis=-1) * 255)
    h, w = a.shape
    for it in range(chosen.shape[0]):
        for r in range(h - 1, 1, -1):
            for c in range(w - 1, 1, -1):
                if chosen[it, r - 2, c - 2]:
                    rp, cp = r + dy[it, r - 2, c - 2], c + dx[it, r - 2, c - 2]
                    a[r, c], a[rp, cp] = a[rp, cp], a[r, c]
    return np.clip(skfilters.gaussian(a / 255.0, sigma=0.7, channel_axis=-1), 0, 1)


def test_glass_blur_matches_sequential_reference(digits):
    x = digits[:40]
    seeds = _seeds(40)
    chosen, dx, dy = mc._glass_draws(seeds, 28, 28, 2)
    ref = np.stack([_glass_reference(x[i, 0].double().numpy(), chosen[i].numpy(), dx[i].numpy(), dy[i].numpy())
                    for i in range(len(x))])  # fmt: skip
    ours64 = _mc(x.double(), "glass_blur", seeds)[:, 0].numpy()
    assert np.array_equal(ours64, ref)  # bit-identical in float64
    ours32 = _mc(x, "glass_blur", seeds)[:, 0].numpy()
    diff = np.abs(ours32 - ref)
    print(f"glass_blur float32: max {diff.max() * 255:.3f} grey levels, mean {diff.mean() * 255:.2e}")
    assert diff.mean() <= 1e-4 and diff.max() <= 1.0 / 255 + 1e-6
    u = chosen.double().mean().item(), dx.double().mean().item(), dy.double().mean().item()
    assert abs(u[0] - 0.5) < 0.02 and abs(u[1] + 0.5) < 0.02 and abs(u[2] + 0.5) < 0.02


@pytest.mark.parametrize(("height", "width", "iterations"), [(28, 28, 2), (9, 17, 3), (30, 5, 2)])
def test_glass_swap_source_is_the_sequential_permutation(height, width, iterations):
    seeds = _seeds(12, salt=height)
    chosen, dx, dy = mc._glass_draws(seeds, height, width, iterations)
    source = mc._glass_swap_source(chosen, dx, dy, height, width).numpy()
    for i in range(len(seeds)):
        a = np.arange(height * width).reshape(height, width)
        for it in range(iterations):
            for r in range(height - 1, 1, -1):
                for c in range(width - 1, 1, -1):
                    if chosen[i, it, r - 2, c - 2]:
                        rp, cp = r + int(dy[i, it, r - 2, c - 2]), c + int(dx[i, it, r - 2, c - 2])
                        a[r, c], a[rp, cp] = a[rp, cp], a[r, c]
        assert np.array_equal(source[i], a.reshape(-1))


# ---------------------------------------------------------------------------------------------------------------------
# noise, motion blur, fog, spatter


def test_shot_noise_statistics():
    x = torch.full((64, 1, 28, 28), 0.5)
    out = _mc(x, "shot_noise", 0).double()
    counts = out * 3  # Poisson(1.5) / 3, clipped at 1 (counts >= 3 -> 3)
    assert torch.allclose(counts, torch.round(counts), atol=1e-5)
    k = np.arange(60)
    values = np.minimum(k / 3, 1.0)
    pmf = stats.poisson.pmf(k, 1.5)
    mean, var = float((values * pmf).sum()), float((values**2 * pmf).sum() - (values * pmf).sum() ** 2)
    n = out.numel()
    assert abs(float(out.mean()) - mean) < 5 * math.sqrt(var / n)
    assert abs(float(out.var()) - var) < 0.05 * var


def test_impulse_noise_statistics(digits):
    x = torch.full((64, 1, 28, 28), 0.5)
    out = _mc(x, "impulse_noise", 0)
    salt, pepper = float((out == 1).double().mean()), float((out == 0).double().mean())
    sd = math.sqrt(0.085 * 0.915 / out.numel())
    assert abs(salt - 0.085) < 5 * sd and abs(pepper - 0.085) < 5 * sd
    assert torch.equal(out[(out != 0) & (out != 1)], x[(out != 0) & (out != 1)])
    real = _mc(digits[:64], "impulse_noise", 0)
    changed = real != digits[:64]
    assert bool(((real == 0) | (real == 1))[changed].all())


def test_motion_blur_vs_imagecorruptions(digits):
    imagecorruptions = pytest.importorskip("imagecorruptions")
    x = digits[:12]
    seeds = _seeds(12)
    ours = np.uint8(np.clip(_mc(x, "motion_blur", seeds)[:, 0].double().numpy(), 0, 1) * 255)
    angles = rng.uniform(seeds, (1,), stream=blur._MOTION_ANGLE_STREAM, dtype=torch.float64)[:, 0] * 90 - 45
    worst = 0
    for i in range(len(x)):
        image = np.uint8(np.round(x[i, 0].double().numpy() * 255))
        ref = imagecorruptions.corruptions._motion_blur(image, radius=10, sigma=3, angle=float(angles[i]))
        ref = np.uint8(np.clip(np.asarray(ref, dtype=np.float64).reshape(28, 28), 0, 255))
        d = np.abs(ours[i].astype(int) - ref.astype(int))
        worst = max(worst, int(d.max()))
        assert d.max() <= 1 and d.mean() <= 0.5
    print(f"motion_blur vs imagecorruptions at 28 px: max {worst} grey level(s)")


def test_fog_uses_a_256_plasma_map_cropped_to_28(digits):
    seeds = _seeds(6)
    ones = torch.ones(6, 1, 28, 28, dtype=torch.float64)
    out = _mc(ones, "fog", seeds)[:, 0]  # M = 1: out = (1 + 3 P) / 4
    plasma = (4 * out - 1) / 3
    uniforms = rng.uniform(seeds, (256 * 256 - 1,), stream=weather._STREAM_FOG, dtype=torch.float64)
    expected = weather._plasma_fractal(uniforms, 256, 1.4, torch.float64)[:, :28, :28]
    assert torch.allclose(plasma, expected, atol=1e-12)
    assert float((plasma.amax((1, 2)) - plasma.amin((1, 2))).max()) < 1  # a crop, not a whole normalised map
    x = digits[:6].double()
    peak = x.amax((1, 2, 3), keepdim=True)
    formula = ((x + 3 * expected[:, None]) * peak / (peak + 3)).clamp(0, 1)
    assert torch.allclose(_mc(x, "fog", seeds), formula, atol=1e-12)


def test_spatter_mud_pipeline(digits):
    x = digits[:16].double()
    seeds = _seeds(16)
    field = rng.normal(seeds, (28, 28), stream=weather._STREAM_SPATTER, dtype=torch.float64) * 0.3 + 0.65
    ref = []
    for i in range(len(x)):  # MNIST-C spatter(severity=4): mud
        liquid = skfilters.gaussian(field[i].numpy(), sigma=1)
        liquid[liquid < 0.65] = 0
        m = skfilters.gaussian(np.where(liquid > 0.65, 1, 0).astype(np.float32), sigma=1.5)
        m[m < 0.8] = 0
        ref.append(np.clip(x[i, 0].numpy() * (1 - m) + 63 / 255 * m, 0, 1))
    ref = np.stack(ref)
    ours = _mc(x, "spatter", seeds)[:, 0].numpy()
    diff = np.abs(ours - ref)
    print(f"spatter: max |diff| {diff.max():.2e}")
    assert diff.max() <= 1e-6
    assert (ref != x[:, 0].numpy()).mean() > 0.01  # the test draws have mud


# ---------------------------------------------------------------------------------------------------------------------
# lines


def _line_reference(c0: float, r0: float, c1: float, r1: float) -> np.ndarray:
    """MNIST-C ``line_from_points`` semantics on the 28 x 28 grid, pixel by pixel."""
    out = np.zeros((28, 28))
    if c1 == c0:
        return out
    slope = (r1 - r0) / (c1 - c0)
    for r in range(28):
        for c in range(math.floor(c0), math.ceil(c1)):
            if 0 <= c < 28:
                d = min(abs(r - (slope * (c - c0) + r0)), 2.3 - 1e-10)
                out[r, c] = min(max(math.log(1 - d / 2.3) + 1, 0.0), 1.0)
    return out


def _zigzag_reference(r0: int, r1: int) -> np.ndarray:
    a = b = 2.0
    theta = math.atan((r1 - r0) / 23)
    d = 23 / math.cos(theta)
    points = [(0.0, 0.0)]
    last = 0.0
    for i in range(int((d - a) // (2 * a)) + 1):
        last = (-1) ** i * b
        points.append(((2 * i + 1) * a, last))
    end = 2 * a * (d // (2 * a))
    if d != end:
        points.append((d, last / (2 * (d - end))))
    rotated = [(math.cos(theta) * c - math.sin(theta) * r + 2, math.sin(theta) * c + math.cos(theta) * r + r0)
               for c, r in points]  # fmt: skip
    total = np.zeros((28, 28))
    for (ca, ra), (cb, rb) in zip(rotated[:-1], rotated[1:]):
        total += _line_reference(ca, ra, cb, rb)
    return total


def test_dotted_line_and_zigzag_vs_reference(digits):
    x = digits[:24].double()
    seeds = _seeds(24)
    u = mc._uniform(seeds, 2, mc._STREAM_LINE)
    rows = torch.floor(u * 27).long()  # randint(0, 27) twice
    dotted = _mc(x, "dotted_line", seeds)[:, 0].numpy()
    zig = _mc(x, "zigzag", seeds)[:, 0].numpy()
    worst = 0.0
    for i in range(len(x)):
        r0, r1 = int(rows[i, 0]), int(rows[i, 1])
        line = _line_reference(0, r0, 27, r1)
        line[:, (np.arange(28) // 2) % 2 == 0] = 0  # every other 2-px segment removed, starting with columns 0-1
        ref = np.clip(x[i, 0].numpy() + line, 0, 1)
        worst = max(worst, float(np.abs(dotted[i] - ref).max()))
        z1 = r0 + int(math.floor(float(u[i, 1]) * 10)) - 5  # r0 + randint(-5, 5)
        ref = np.clip(x[i, 0].numpy() + _zigzag_reference(r0, z1), 0, 1)
        worst = max(worst, float(np.abs(zig[i] - ref).max()))
    print(f"lines: max |diff| {worst:.2e}")
    assert worst <= 1e-12


def test_line_draws_cover_the_reference_ranges():
    u = mc._uniform(_seeds(4000), 2, mc._STREAM_LINE)
    rows = torch.floor(u * 27).long()
    assert int(rows.min()) == 0 and int(rows.max()) == 26
    slopes = torch.floor(u[:, 1] * 10).long() - 5
    assert set(slopes.tolist()) == set(range(-5, 5))
