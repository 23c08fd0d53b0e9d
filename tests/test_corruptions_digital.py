"""Tests of the digital corruptions (contrast, elastic, pixelate, JPEG, saturate) and the release-fidelity tail.

Parity: contrast, pixelate, jpeg_compression and saturate against the ``imagecorruptions`` oracle at the ImageNet
preset on real photographs; elastic_transform against a numpy / OpenCV / scipy transcription of the *original*
ImageNet-C algorithm written below (the oracle implements a different, re-parameterised one), with injected draws.
"""

from __future__ import annotations

import functools
import io

import numpy as np
import pytest
import torch
from PIL import Image

from robustnoise.corruptions import (
    CORRUPTION_FNS,
    PRESETS,
    corrupt,
    corruption_id,
    digital,
    rng,
    sample_seeds,
    severity_params,
)
from robustnoise.corruptions.fidelity import (
    RELEASE_JPEG_QUALITY,
    quantize_uint8_truncate,
    release_fidelity,
)
from robustnoise.corruptions.presets import Elastic
from robustnoise.corruptions.registry import lookup
from robustnoise.utils.errors import RobustnoiseError
from tests.conftest import assert_images_close

DIGITAL = ("contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate")
ORACLE_PARITY = ("contrast", "pixelate", "jpeg_compression", "saturate")


@functools.cache
def _photos(size: int, width: int | None = None) -> np.ndarray:
    """astronaut, chelsea, coffee: centre-cropped to a square and resized (PIL bilinear); (3, size, width, 3) uint8."""
    skdata = pytest.importorskip("skimage.data")
    out = []
    for photo in (skdata.astronaut(), skdata.chelsea(), skdata.coffee()):
        h, w = photo.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        square = Image.fromarray(photo[top : top + side, left : left + side])
        out.append(np.asarray(square.resize((width or size, size), Image.BILINEAR)))
    return np.stack(out)


def _to_tensor(images: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, C, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(dtype).div(255.0)


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) float -> (N, H, W, C) uint8 with the oracle's conversion (clip, x255, truncate)."""
    return quantize_uint8_truncate(images).permute(0, 2, 3, 1).numpy()


def _seeds(n: int, start: int = 0) -> torch.Tensor:
    return torch.arange(start, start + n, dtype=torch.int64)


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int64) - b.astype(np.int64))


def _pil_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer))


# ---------------------------------------------------------------------------------------------------------------------
# registry


def test_digital_family_is_registered():
    assert {n for n in CORRUPTION_FNS if lookup(n, "imagenet").family == "digital"} == set(DIGITAL)
    x = torch.rand(2, 3, 32, 32)
    for name in DIGITAL:
        out = corrupt(x, name, 3, "cifar", seed=1)
        assert out.shape == x.shape and out.dtype == x.dtype


# ---------------------------------------------------------------------------------------------------------------------
# parity with the imagecorruptions oracle (ImageNet preset, 224 px photographs)


@pytest.mark.parametrize("name", ORACLE_PARITY)
def test_parity_with_oracle_imagenet(name):
    oracle = pytest.importorskip("imagecorruptions")
    photos = _photos(224)
    x = _to_tensor(photos)
    seeds = _seeds(len(photos))
    for severity in range(1, 6):
        ours = _to_uint8(CORRUPTION_FNS[name](x, severity_params(name, severity, "imagenet"), seeds))
        ref = np.stack([oracle.corrupt(p, corruption_name=name, severity=severity) for p in photos])
        diff = _diff(ours, ref)
        assert diff.max() <= 1, (name, severity, diff.max())
        assert diff.mean() <= 0.5, (name, severity, diff.mean())
        if name != "saturate":  # bit-identical (saturate: float32 vs float64 rounding moves a few % by 1)
            assert diff.max() == 0, (name, severity, diff.max())


def test_saturate_float64_is_close_to_oracle():
    oracle = pytest.importorskip("imagecorruptions")
    photos = _photos(224)[:1]
    x = _to_tensor(photos, torch.float64)
    for severity in (3, 5):
        ours = _to_uint8(digital.saturate(x, severity_params("saturate", severity, "imagenet"), _seeds(1)))
        ref = oracle.corrupt(photos[0], corruption_name="saturate", severity=severity)[None]
        assert _diff(ours, ref).mean() <= 0.05


def test_saturate_matches_skimage_hsv_round_trip():
    color = pytest.importorskip("skimage.color")
    rs = np.random.RandomState(0)
    rgb = rs.randint(0, 256, size=(40, 40, 3)).astype(np.float64) / 255.0
    rgb[0, :5] = [[0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5], [1, 1, 0], [0, 1, 1]]  # black, white, grey, ties
    rgb[1, :4] = [[0.2, 0.2, 0.7], [0.7, 0.2, 0.7], [0.3, 0.6, 0.6], [0.9, 0.1, 0.1]]
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    for multiply, add in ((0.3, 0.0), (2.0, 0.0), (5.0, 0.1), (20.0, 0.2), (0.5, 0.7)):
        hsv = color.rgb2hsv(rgb)
        hsv[..., 1] = np.clip(hsv[..., 1] * multiply + add, 0, 1)
        ref = np.clip(color.hsv2rgb(hsv), 0, 1)
        ours = digital.saturate(x, (multiply, add), _seeds(1))[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------------
# pixelate: Pillow BOX resize


def test_box_weights_match_pillow():
    n, m = 224, 134
    eye = np.eye(n, dtype=np.float32)
    pil = np.stack([np.asarray(Image.fromarray(row[None], mode="F").resize((m, 1), Image.BOX))[0] for row in eye], 1)
    ours = np.zeros((m, n))
    for row, (start, stop) in enumerate(zip(*digital._box_taps(n, m)[:2])):
        ours[row, start:stop] = 1.0 / (stop - start)
    np.testing.assert_allclose(ours, pil, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("preset", "size", "pixels"),
    [("cifar", 32, (30, 28, 27, 24, 20)), ("tinyimagenet", 64, (57, 51, 44, 38, 32)), ("imagenet", 224, None)],
)
def test_pixelate_is_pillow_box_down_and_up(preset, size, pixels):
    rs = np.random.RandomState(size)
    images = np.concatenate([_photos(size), rs.randint(0, 256, (1, size, size, 3), dtype=np.uint8)])
    x = _to_tensor(images)
    sizes = [int(size * fraction) for fraction in PRESETS[preset]["pixelate"]]
    if pixels is not None:
        assert tuple(sizes) == pixels
    for severity, small in enumerate(sizes, start=1):
        ours = _to_uint8(digital.pixelate(x, severity_params("pixelate", severity, preset), _seeds(len(images))))
        for image, out in zip(images, ours):
            down = Image.fromarray(image).resize((small, small), Image.BOX)
            np.testing.assert_array_equal(out, np.asarray(down.resize((size, size), Image.BOX)))
            np.testing.assert_array_equal(out, np.asarray(down.resize((size, size), Image.NEAREST)))


def test_pixelate_non_square_and_odd_sizes_match_pillow():
    rs = np.random.RandomState(1)
    for height, width, fraction in ((37, 53, 0.4), (100, 71, 0.8), (299, 299, 0.85)):
        image = rs.randint(0, 256, (height, width, 3), dtype=np.uint8)
        ours = _to_uint8(digital.pixelate(_to_tensor(image[None]), fraction, _seeds(1)))[0]
        small = (int(width * fraction), int(height * fraction))
        ref = Image.fromarray(image).resize(small, Image.BOX).resize((width, height), Image.BOX)
        np.testing.assert_array_equal(ours, np.asarray(ref))


# ---------------------------------------------------------------------------------------------------------------------
# JPEG


@pytest.mark.parametrize("preset", ["cifar", "tinyimagenet"])
def test_jpeg_matches_pillow_at_small_presets(preset):
    size = {"cifar": 32, "tinyimagenet": 64}[preset]
    photos = _photos(size)
    x = _to_tensor(photos)
    for severity, quality in enumerate(PRESETS[preset]["jpeg_compression"], start=1):
        ours = _to_uint8(digital.jpeg_compression(x, severity_params("jpeg_compression", severity, preset), _seeds(3)))
        ref = np.stack([_pil_jpeg(p, quality) for p in photos])
        diff = _diff(ours, ref)
        assert diff.max() <= 1 and diff.mean() <= 0.5, (preset, severity, diff.max(), diff.mean())


def test_jpeg_roundtrip_uint8_channels():
    rs = np.random.RandomState(2)
    grey = rs.randint(0, 256, (2, 1, 40, 48), dtype=np.uint8)
    out = digital.jpeg_roundtrip_uint8(torch.from_numpy(grey), 30)
    assert out.dtype == torch.uint8 and out.shape == grey.shape
    for image, decoded in zip(grey, out):
        np.testing.assert_array_equal(decoded[0].numpy(), _pil_jpeg(image[0], 30))  # greyscale JPEG, like PIL 'L'
    four = torch.from_numpy(rs.randint(0, 256, (1, 4, 16, 16), dtype=np.uint8))
    assert digital.jpeg_roundtrip_uint8(four, 50).shape == four.shape  # other channel counts: one plane each
    with pytest.raises(ValueError, match="uint8"):
        digital.jpeg_roundtrip_uint8(four.float(), 50)
    with pytest.raises(ValueError, match="quality"):
        digital.jpeg_roundtrip_uint8(four, 0)


# ---------------------------------------------------------------------------------------------------------------------
# elastic transform: the original ImageNet-C algorithm, transcribed with numpy / OpenCV / scipy


def _reference_elastic(image: np.ndarray, alpha: float, sigma: float, offsets: np.ndarray, fields: np.ndarray):
    """Original ImageNet-C elastic transform of an (H, W, C) uint8 image with given draws.

    ``offsets``: (3, 2) jitter of the affine points in pixels (U(-j, j) in the original); ``fields``: (2, H, W) raw
    U(-1, 1) displacement fields (dx, then dy). Returns the uint8 result after the original's clip, x255, truncation.
    """
    cv2 = pytest.importorskip("cv2")
    ndimage = pytest.importorskip("scipy.ndimage")
    img = image.astype(np.float32) / 255.0
    height, width = img.shape[:2]
    centre = np.float32((height, width)) // 2  # (row, column) values, handed to OpenCV as (x, y) like the original
    k = min(height, width) // 3
    source = np.float32([centre + k, [centre[0] + k, centre[1] - k], centre - k])
    target = source + offsets.astype(np.float32)
    affine = cv2.getAffineTransform(source, target)
    img = cv2.warpAffine(img, affine, (width, height), borderMode=cv2.BORDER_REFLECT_101)
    if img.ndim == 2:
        img = img[..., None]
    dx = (ndimage.gaussian_filter(fields[0], sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
    dy = (ndimage.gaussian_filter(fields[1], sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
    rows, cols, chans = np.meshgrid(np.arange(height), np.arange(width), np.arange(img.shape[2]), indexing="ij")
    coords = np.stack([(rows + dy[..., None]).ravel(), (cols + dx[..., None]).ravel(), chans.ravel()])
    out = ndimage.map_coordinates(img, coords, order=1, mode="reflect").reshape(img.shape)
    return np.uint8(np.clip(out, 0, 1) * 255)


def _elastic_cases():
    for preset, size in (("imagenet", 224), ("cifar", 32), ("tinyimagenet", 64)):
        for severity in range(1, 6):
            yield preset, size, size, severity_params("elastic_transform", severity, preset)
    yield "non-square", 48, 80, severity_params("elastic_transform", 3, "imagenet")
    yield "non-square", 64, 40, severity_params("elastic_transform", 2, "tinyimagenet")
    yield "far-reflections", 32, 32, Elastic(120.0, 1.0, 30.0)  # displacements of tens of pixels: many reflections


@pytest.mark.parametrize(("preset", "height", "width", "param"), list(_elastic_cases()))
def test_elastic_matches_original_algorithm(preset, height, width, param):
    photos = _photos(height, width)[:1] if height == 224 else _photos(height, width)
    n = len(photos)
    rs = np.random.RandomState(height * 1000 + width + int(param.alpha * 10))
    jitter = rs.uniform(-1, 1, (n, 3, 2))
    fields = rs.uniform(-1, 1, (n, 2, height, width)).astype(np.float32)
    out = digital._elastic_warp(_to_tensor(photos), param, torch.from_numpy(jitter), torch.from_numpy(fields))
    ours = _to_uint8(out)
    ref = np.stack(
        [
            _reference_elastic(p, param.alpha, param.sigma, j * np.float32(param.affine_jitter), f.astype(np.float64))
            for p, j, f in zip(photos, jitter, fields)
        ]
    )
    diff = _diff(ours, ref)
    assert diff.mean() <= 0.5 and diff.max() <= 2, (preset, param, diff.mean(), diff.max())
    assert diff.mean() <= 0.01  # measured: <= 2e-4
    assert _diff(photos, ref).mean() > 1.0  # the transform does move pixels


@pytest.mark.parametrize("sigma", [0.0, 0.96, 2.44, 6.4, 19.52, 170.8])
def test_gaussian_filter_matches_scipy_reflect(sigma):
    ndimage = pytest.importorskip("scipy.ndimage")
    rs = np.random.RandomState(3)
    for height, width in ((224, 224), (32, 48), (33, 45)):
        fields = rs.uniform(-1, 1, (2, height, width))
        ref = np.stack([ndimage.gaussian_filter(f, sigma, mode="reflect", truncate=3) for f in fields])
        ours = digital._gaussian_filter_reflect(torch.from_numpy(fields), sigma).numpy()
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_elastic_draws_depend_on_seed():
    x = _to_tensor(_photos(32))
    param = severity_params("elastic_transform", 4, "cifar")
    a = digital.elastic_transform(x, param, _seeds(3))
    b = digital.elastic_transform(x, param, _seeds(3))
    c = digital.elastic_transform(x, param, _seeds(3, start=10))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.exact  # the same draws and the same arithmetic
def test_elastic_draws_are_the_per_image_uniform_streams():
    x, seeds = _to_tensor(_photos(32)), _seeds(3)
    param = severity_params("elastic_transform", 4, "cifar")
    jitter = rng.uniform(seeds, (3, 2), digital._STREAM_AFFINE, dtype=torch.float64) * 2 - 1
    fields = rng.uniform(seeds, (2, 32, 32), digital._STREAM_FIELD) * 2 - 1  # float32 for any image dtype
    assert torch.equal(digital.elastic_transform(x, param, seeds), digital._elastic_warp(x, param, jitter, fields))
    out64 = digital._elastic_warp(x.double(), param, jitter, fields.double())
    assert torch.equal(digital.elastic_transform(x.double(), param, seeds), out64)


# ---------------------------------------------------------------------------------------------------------------------
# presets, batching, dtypes, channels


@pytest.mark.parametrize("preset", ["cifar", "tinyimagenet"])
@pytest.mark.parametrize("name", DIGITAL)
def test_small_presets_give_valid_outputs(name, preset):
    size = {"cifar": 32, "tinyimagenet": 64}[preset]
    x = _to_tensor(_photos(size))
    for severity in range(1, 6):
        out = corrupt(x, name, severity, preset, seed=7)
        assert out.shape == x.shape and out.dtype == x.dtype
        assert bool(torch.isfinite(out).all()) and float(out.min()) >= 0 and float(out.max()) <= 1
        assert torch.equal(out, corrupt(x, name, severity, preset, seed=7))
        if name != "saturate" or severity != 1:
            assert float((out - x).abs().mean()) > 1e-3, (name, preset, severity)


@pytest.mark.parametrize("name", DIGITAL)
def test_per_sample_seeding_is_batch_independent(name):
    x = torch.rand(4, 3, 48, 40)
    severity = 4
    seeds = sample_seeds(11, torch.arange(4), corruption_id(name), severity)
    batch = corrupt(x, name, severity, "tinyimagenet", seed=seeds)
    for i in range(4):
        alone = corrupt(x[i : i + 1], name, severity, "tinyimagenet", seed=seeds[i : i + 1])
        assert_images_close(alone[0], batch[i], (name, i))  # GEMMs change with the batch shape: float rounding
    order = torch.tensor([2, 0, 3, 1])
    assert_images_close(corrupt(x[order], name, severity, "tinyimagenet", seed=seeds[order]), batch[order])


@pytest.mark.parametrize("name", DIGITAL)
def test_cpu_chunking_does_not_change_results(name, monkeypatch):
    x = torch.rand(5, 3, 32, 32)
    param = severity_params(name, 5, "cifar")
    chunked = CORRUPTION_FNS[name](x, param, _seeds(5))
    monkeypatch.setattr(digital, "_CPU_CHUNK_ELEMENTS", 1 << 30)
    assert_images_close(CORRUPTION_FNS[name](x, param, _seeds(5)), chunked)


def _devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", _devices())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", DIGITAL)
def test_dtype_and_device_preserved(name, dtype, device):
    x = _to_tensor(_photos(32)[:2]).to(device=device, dtype=dtype)
    out = corrupt(x, name, 3, "cifar", seed=0)
    assert out.dtype == dtype and out.device == x.device and out.shape == x.shape
    ref = corrupt(x.float().cpu(), name, 3, "cifar", seed=0)
    tol = 1e-6 if dtype in (torch.float32, torch.float64) else 2e-2
    assert float((out.float().cpu() - ref).abs().mean()) <= tol


@pytest.mark.parametrize("name", ["contrast", "pixelate", "elastic_transform"])
def test_greyscale_equals_channel_of_grey_rgb(name):
    grey = _to_tensor(_photos(32))[:, :1]
    param = severity_params(name, 4, "cifar")
    out = CORRUPTION_FNS[name](grey, param, _seeds(3))
    rgb = CORRUPTION_FNS[name](grey.expand(-1, 3, -1, -1).contiguous(), param, _seeds(3))
    assert out.shape == grey.shape
    assert torch.equal(out[:, 0], rgb[:, 0])


def test_greyscale_jpeg_and_saturate():
    grey = _to_tensor(_photos(32))[:, :1]
    out = digital.jpeg_compression(grey, 40, _seeds(3))
    ref = np.stack([_pil_jpeg(g, 40) for g in _to_uint8(grey)[..., 0]])
    np.testing.assert_array_equal(_to_uint8(out)[..., 0], ref)
    assert torch.equal(digital.saturate(grey, (5, 0.1), _seeds(3)), grey)  # V of a grey pixel: unchanged
    with pytest.raises(ValueError, match="RGB"):
        digital.saturate(torch.rand(1, 2, 8, 8), (5, 0.1), _seeds(1))


def test_empty_batch():
    x = torch.rand(0, 3, 32, 32)
    for name in DIGITAL:
        assert CORRUPTION_FNS[name](x, severity_params(name, 2, "cifar"), _seeds(0)).shape == x.shape


# ---------------------------------------------------------------------------------------------------------------------
# release-fidelity tail


def test_quantize_uint8_truncates():
    x = torch.tensor([0.0, 0.999, 1.0, 1.2, -0.3, 0.5, 254.9 / 255, 100.5 / 255])
    assert quantize_uint8_truncate(x).tolist() == [0, 254, 255, 255, 0, 127, 254, 100]
    grid = torch.arange(256, dtype=torch.float64)
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        values = (grid / 255).to(dtype)
        assert quantize_uint8_truncate(values).tolist() == list(range(256)), dtype  # k/255 -> k in every dtype
    assert np.array_equal(quantize_uint8_truncate(grid / 255 * 0.9999).numpy(), np.uint8(grid.numpy() * 0.9999))
    with pytest.raises(TypeError):
        quantize_uint8_truncate(torch.zeros(2, dtype=torch.uint8))
    batch = torch.from_numpy(np.random.RandomState(0).uniform(-0.1, 1.1, (3, 3, 150, 160)))  # 3 cache chunks
    assert np.array_equal(quantize_uint8_truncate(batch).numpy(), np.uint8(np.clip(batch.numpy() * 255, 0, 255)))


@pytest.mark.parametrize("preset", list(PRESETS))
def test_release_fidelity(preset):
    rs = np.random.RandomState(5)
    x = torch.from_numpy(rs.uniform(-0.05, 1.05, (2, 3, 64, 64))).float()
    out = release_fidelity(x, preset)
    assert out.dtype == x.dtype and out.shape == x.shape
    truncated = quantize_uint8_truncate(x).permute(0, 2, 3, 1).numpy()
    if preset == "cifar":
        expected = truncated
    else:
        expected = np.stack([_pil_jpeg(image, RELEASE_JPEG_QUALITY) for image in truncated])
    np.testing.assert_array_equal(_to_uint8(out), expected)
    if preset == "cifar":
        assert torch.equal(release_fidelity(out, preset), out)  # truncation alone is idempotent on the grid
    assert release_fidelity(x.double(), preset).dtype == torch.float64


def test_release_fidelity_rejects_bad_input():
    with pytest.raises(RobustnoiseError, match="preset"):
        release_fidelity(torch.rand(1, 3, 8, 8), "mnist")
    with pytest.raises(RobustnoiseError, match="float"):
        release_fidelity(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "cifar")
