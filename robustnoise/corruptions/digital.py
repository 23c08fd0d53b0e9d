"""Digital corruptions of ImageNet-C: contrast, elastic transform, pixelate, JPEG and saturate (holdout).

Each function takes float images (N, C, H, W) in [0, 1] on any device, the severity parameter from
:mod:`robustnoise.corruptions.presets` and one int64 seed per sample, and returns clipped images of the input dtype on
the input device. Algorithms follow ``make_imagenet_c.py`` of Hendrycks & Dietterich (2019), "Benchmarking Neural
Network Robustness to Common Corruptions and Perturbations"; ``docs/parity/digital.md`` lists how each is tested.

* ``contrast`` and ``saturate`` are elementwise (saturate is scikit-image's RGB -> HSV -> RGB round trip in closed
  form, see :func:`_saturate`).
* ``pixelate`` reproduces Pillow's ``BOX`` resize down and back up bit for bit on uint8 images, including Pillow's
  22-bit fixed-point weights and its rounding to uint8 after each pass.
* ``jpeg_compression`` is a libjpeg(-turbo) encode/decode on the CPU (torchvision's codec, bit-identical to Pillow's
  at the same quality and 4:2:0 chroma subsampling).
* ``elastic_transform`` is the *original* ImageNet-C algorithm (random affine, then a smoothed random displacement
  field), not the re-parameterised variant of the ``imagecorruptions`` package.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg

from robustnoise.corruptions import rng
from robustnoise.corruptions.api_types import prepare_images
from robustnoise.corruptions.filters import correlate1d, gaussian_kernel1d, map_image_chunks
from robustnoise.corruptions.registry import register

__all__ = [
    "contrast",
    "elastic_transform",
    "jpeg_compression",
    "jpeg_roundtrip_uint8",
    "pixelate",
    "quantize_uint8_round",
    "saturate",
]

# Random streams of elastic_transform (keyed by the per-image seeds).
_STREAM_AFFINE = 0
_STREAM_FIELD = 1

# CPU batches are processed in chunks of whole images of about this many values (filters.map_image_chunks).
_CPU_CHUNK_ELEMENTS = 1 << 18

# Safe divisor for ratios whose numerator is 0 whenever the divisor is (saturate).
_TINY = 1e-30

# Pillow's resampling arithmetic (libImaging/Resample.c): 8-bit images use 32 - 8 - 2 = 22 fractional bits.
_PRECISION_BITS = 22


def quantize_uint8_round(images: Tensor) -> Tensor:
    """Float images in [0, 1] -> uint8 by rounding half up, as ``PIL.Image.fromarray`` receives them.

    Exact for images that are already on the 1/255 grid (any float dtype that can hold k/255 to within half a step).
    """
    x = images.mul(255.0).add_(0.5).clamp_(0.0, 255.0)
    return x.to(torch.int32).to(torch.uint8)  # truncation == floor here; via int32: faster on the CPU


# ---------------------------------------------------------------------------------------------------------------------
# contrast


def _contrast(x: Tensor, c: float, out: Tensor) -> Tensor:
    return torch.lerp(x.mean(dim=(2, 3), keepdim=True), x, c, out=out).clamp_(0.0, 1.0)  # (x - m) c + m in one pass


@register("contrast", "digital")
def contrast(images: Tensor, severity_param: float, seeds: Tensor) -> Tensor:
    """``clip((x - m) c + m)`` with ``m`` the spatial mean of each channel of each image (ImageNet-C ``contrast``)."""
    x, _ = prepare_images(images, seeds)
    c = float(severity_param)
    out = map_image_chunks(lambda chunk, o: _contrast(chunk, c, o), x, max_elements=_CPU_CHUNK_ELEMENTS, into=True)
    return out.to(images.dtype)


# ---------------------------------------------------------------------------------------------------------------------
# pixelate: Pillow BOX resize


@functools.lru_cache(maxsize=128)
def _box_taps(in_size: int, out_size: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Pillow's BOX taps for resizing ``in_size`` -> ``out_size`` along one axis (``precompute_coeffs``, Resample.c):
    weight 1 for every input pixel whose *centre* lies in the box of width ``max(in / out, 1)`` around the output
    pixel (no fractional coverage), normalised; 8-bit images store ``1 / count`` as ``int(0.5 + 2**22 / count)``.
    Returns, per output pixel, the first and one-past-last input index of its run of taps and that weight."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    inv = 1.0 / filterscale
    starts, stops, weights = [], [], []
    for xx in range(out_size):
        centre = (xx + 0.5) * scale
        xmin = max(int(centre - support + 0.5), 0)
        xmax = min(int(centre + support + 0.5), in_size)
        taps = [x for x in range(xmin, xmax) if -0.5 < (x - centre + 0.5) * inv <= 0.5]  # one run: a box
        starts.append(taps[0])
        stops.append(taps[-1] + 1)
        weights.append(int(0.5 + (1.0 / len(taps)) * (1 << _PRECISION_BITS)))
    return tuple(starts), tuple(stops), tuple(weights)


@functools.lru_cache(maxsize=64)
def _box_tensors(in_size: int, out_size: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """(K, out) tap indices (``in_size`` = a zero pad for runs shorter than K) and the (out,) int32 weights."""
    starts, stops, weights = _box_taps(in_size, out_size)
    start = torch.tensor(starts)
    count = torch.tensor(stops) - start
    k = torch.arange(int(count.max()))[:, None]
    taps = torch.where(k < count, start + k, in_size)
    return taps.to(device), torch.tensor(weights, dtype=torch.int32, device=device)


def _box_resize_rows(x: Tensor, out_size: int) -> Tensor:
    """One Pillow BOX pass along the last dim of an int32 tensor (..., H, W) holding 0..255, returned transposed (...,
    out_size, H): ``clip8((w * tap_sum + 2**21) >> 22)`` exactly as Pillow computes it (int32: products stay below
    2**31), so bit-identical on every device. The tap sums add K row selections (K = the longest run of taps) from
    the transposed input padded with a zero row (one copy; selecting rows is several times faster than gathering)."""
    taps, weights = _box_tensors(x.shape[-1], out_size, x.device)
    padded = torch.cat((x.transpose(-1, -2), x.new_zeros(*x.shape[:-2], 1, x.shape[-2])), dim=-2)
    sums = padded.index_select(-2, taps[0])
    for k in range(1, taps.shape[0]):
        sums += padded.index_select(-2, taps[k])
    fixed = sums.mul_(weights[:, None]).add_(1 << (_PRECISION_BITS - 1)).bitwise_right_shift_(_PRECISION_BITS)
    return fixed.clamp_(0, 255)


@functools.lru_cache(maxsize=64)
def _upsample_index(in_size: int, out_size: int, device: torch.device) -> Tensor:
    """Source pixel of each output pixel of Pillow's BOX upsampling along one axis (one tap of weight 1).

    Output pixel ``j`` copies input pixel ``int((j + 0.5) * in / out)``, the pixel whose box contains its centre.
    """
    scale = in_size / out_size
    return torch.tensor([min(int((j + 0.5) * scale), in_size - 1) for j in range(out_size)], device=device)


def _pixelate(x: Tensor, small_h: int, small_w: int, out: Tensor) -> Tensor:
    height, width = x.shape[-2:]
    work = x.mul(255.0).add_(0.5).clamp_(0.0, 255.0).to(torch.int32)  # quantize_uint8_round, as int32
    work = _box_resize_rows(work, small_w)  # Pillow: horizontal pass first, rounded to uint8, then vertical
    work = _box_resize_rows(work, small_h)  # transposed twice: (N, C, small_h, small_w)
    small = work.to(x.dtype).div_(255.0)  # on the small image: upsampling only copies values
    columns = _upsample_index(small_w, width, x.device)
    small = torch.gather(small, 3, columns.expand(*small.shape[:-1], width))  # the slow gather on small_h rows only
    return torch.index_select(small, 2, _upsample_index(small_h, height, x.device), out=out)


@register("pixelate", "digital")
def pixelate(images: Tensor, severity_param: float, seeds: Tensor) -> Tensor:
    """Pillow BOX resize to ``int(W c) x int(H c)`` and BOX back up (ImageNet-C ``pixelate``).

    The input is rounded to uint8 (what Pillow would receive); the result is bit-identical to Pillow on uint8 images
    and lies on the 1/255 grid. Works for any number of channels.
    """
    x, _ = prepare_images(images, seeds)
    height, width = x.shape[-2:]
    c = float(severity_param)
    small_h, small_w = max(int(height * c), 1), max(int(width * c), 1)
    return map_image_chunks(
        lambda chunk, o: _pixelate(chunk, small_h, small_w, o), x, max_elements=_CPU_CHUNK_ELEMENTS, into=True
    ).to(images.dtype)


# ---------------------------------------------------------------------------------------------------------------------
# JPEG


def _jpeg_codec(images: Tensor, quality: int) -> Tensor:
    """Encode and decode uint8 CPU images (N, C, H, W) in one call of each; colour images are handed over
    channels-last, the (H, W, C) layout libjpeg reads and writes (else torchvision copies each image into it, slower),
    and returned in it (an (N, C, H, W) view)."""
    n, c, h, w = images.shape
    if images.numel() == 0:
        return images.clone()
    planes = (
        list(images.contiguous(memory_format=torch.channels_last)) if c == 3 else list(images.reshape(n * c, 1, h, w))
    )
    decoded = decode_jpeg(encode_jpeg(planes, quality=quality), mode=ImageReadMode.UNCHANGED)
    if c == 3:
        return torch.stack([image.permute(1, 2, 0) for image in decoded]).permute(0, 3, 1, 2)
    return torch.stack(decoded).reshape(n, c, h, w)


def jpeg_roundtrip_uint8(images: Tensor, quality: int) -> Tensor:
    """Encode and decode uint8 images (N, C, H, W) as baseline JPEG at ``quality``; returns uint8 on the same device.

    Uses libjpeg(-turbo) through torchvision on the CPU with its defaults (4:2:0 chroma subsampling for colour, islow
    DCT, fancy upsampling), which gives the same bytes and pixels as ``PIL.Image.save(..., 'JPEG', quality=q)``.
    Three channels are coded as one colour image; any other channel count as one greyscale image per channel.
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    return _jpeg_codec(images.detach().cpu(), int(quality)).contiguous().to(images.device)


@register("jpeg_compression", "digital")
def jpeg_compression(images: Tensor, severity_param: int, seeds: Tensor) -> Tensor:
    """JPEG round trip at quality ``q`` (ImageNet-C ``jpeg_compression``) of the images rounded to uint8 (what
    Pillow encodes), coded on the CPU with libjpeg; the result lies on the 1/255 grid, on the input device."""
    x, _ = prepare_images(images, seeds)
    quality = int(severity_param)

    def roundtrip(chunk: Tensor, into: Tensor) -> Tensor:  # in cache-sized chunks: the conversions stay in cache
        coded = _jpeg_codec(quantize_uint8_round(chunk.contiguous(memory_format=torch.channels_last)), quality)
        return torch.div(coded, chunk.new_tensor(255.0), out=into)  # in x.dtype, and into the output

    decoded = map_image_chunks(roundtrip, x.detach().cpu(), max_elements=_CPU_CHUNK_ELEMENTS, into=True)
    return decoded.to(device=images.device, dtype=images.dtype)


# ---------------------------------------------------------------------------------------------------------------------
# saturate (holdout)


def _saturate(x: Tensor, multiply: float, add: float, out: Tensor) -> Tensor:
    """scikit-image's ``hsv2rgb`` of ``rgb2hsv(x)`` with ``S <- clip(S a + b)``, in closed form.

    H and V do not change, so every channel moves along the line to V: with ``S = (V - min) / V``,
    ``out = V - (V - x) S' / S`` gives V for the maximum, ``V (1 - S')`` for the minimum and the HSV result for the
    middle channel (for both sector parities). Grey pixels (S = 0) get scikit-image's hue 0: ``(V, V (1 - S'),
    V (1 - S'))`` with ``S' = clip(b)``. Agrees with the HSV round trip up to float rounding.
    """
    v = x.amax(dim=1, keepdim=True)
    delta = v - x.amin(dim=1, keepdim=True)
    s_new = (delta / v.clamp_min(_TINY)).mul_(multiply).add_(add).clamp_(0.0, 1.0)  # S' (grey: clip(b))
    ratio = s_new * v / delta.clamp_min(_TINY)  # S' / S; finite for grey pixels, where v - x is 0
    torch.lerp(v, x, ratio, out=out)  # v - (v - x) ratio in one pass
    if add > 0:  # grey pixels, where out is V: G and B times 1 - S' (a product with 1 elsewhere; no torch.where)
        out[:, 1:] *= 1.0 - s_new * (delta == 0)
    return out.clamp_(0.0, 1.0)


@register("saturate", "digital")
def saturate(images: Tensor, severity_param: Sequence[float], seeds: Tensor) -> Tensor:
    """HSV saturation ``S <- clip(S a + b)`` (ImageNet-C ``saturate``, a holdout corruption).

    RGB only; a single-channel image is returned unchanged (the reference converts grey to RGB, corrupts, and keeps
    the first channel, which is V: the grey value itself).
    """
    x, _ = prepare_images(images, seeds)
    multiply, add = (float(v) for v in severity_param)
    channels = x.shape[1]
    if channels == 1:
        return x.clamp(0.0, 1.0).to(images.dtype)
    if channels != 3:
        raise ValueError(f"saturate needs RGB (3 channels) or greyscale (1 channel) images, got {channels} channels")
    return map_image_chunks(
        lambda chunk, o: _saturate(chunk, multiply, add, o), x, max_elements=_CPU_CHUNK_ELEMENTS, into=True
    ).to(images.dtype)


# ---------------------------------------------------------------------------------------------------------------------
# elastic transform (original ImageNet-C algorithm)


def _gaussian_filter_reflect(fields: Tensor, sigma: float) -> Tensor:
    """scipy ``gaussian_filter(mode='reflect', truncate=3)`` of (..., H, W) (``sigma <= 1e-15``: the identity, as in
    scipy) by the blocked GEMMs of :func:`correlate1d`: the same method at every batch size, so the same result."""
    if sigma <= 1e-15:
        return fields
    kernel = gaussian_kernel1d(sigma, 3.0)
    rows = correlate1d(fields, kernel, -2, "symmetric", method="matmul")
    return correlate1d(rows, kernel, -1, "symmetric", method="matmul")


def _affine_points(height: int, width: int) -> np.ndarray:
    """The reference's three source points ``centre + k``, ``(cy + k, cx - k)``, ``centre - k`` (``centre = (H // 2,
    W // 2)``, ``k = min(H, W) // 3``) as float32: (row, column) values that OpenCV reads as (x, y), which matters
    only for non-square images; we keep it."""
    cy, cx = float(height // 2), float(width // 2)
    k = float(min(height, width) // 3)
    return np.array([[cy + k, cx + k], [cy + k, cx - k], [cy - k, cx - k]], dtype=np.float32)


def _affine_theta(jitter: Tensor, affine_jitter: float, height: int, width: int) -> Tensor:
    """(N, 2, 3) ``affine_grid`` matrices (normalised, ``align_corners=True``) of the reference's warpAffine, which
    samples the source at the inverse of ``cv2.getAffineTransform`` (points -> jittered points); float64 (MPS: 32)."""
    dtype = torch.float64 if jitter.device.type != "mps" else torch.float32
    n, device = jitter.shape[0], jitter.device
    points = torch.from_numpy(_affine_points(height, width)).to(device=device, dtype=dtype)
    jittered = points + jitter.to(dtype) * affine_jitter
    design = torch.cat((points, torch.ones(3, 1, dtype=dtype, device=device)), dim=1)  # rows (x, y, 1)
    forward = torch.linalg.solve(design.expand(n, 3, 3), jittered).transpose(1, 2)  # (N, 2, 3) = [L | t]
    linear_inv = torch.linalg.inv(forward[:, :, :2])
    inverse = torch.cat((linear_inv, -(linear_inv @ forward[:, :, 2:])), dim=2)  # output pixel -> source pixel
    # pixel = half * (normalised + 1) per axis (align_corners=True), so theta = D^-1 [A | A half + t - half]
    half = torch.tensor([max(width - 1, 1) / 2.0, max(height - 1, 1) / 2.0], dtype=dtype, device=device)
    linear = inverse[:, :, :2] * half[None, None, :] / half[None, :, None]
    offset = (inverse[:, :, :2] @ half[:, None] + inverse[:, :, 2:] - half[:, None]) / half[None, :, None]
    return torch.cat((linear, offset), dim=2)


def _affine_grid(theta: Tensor, height: int, width: int) -> Tensor:
    """``F.affine_grid(theta, (N, C, H, W), align_corners=True)`` as two broadcast sums (no (HW x 3) matmul)."""
    u = torch.linspace(-1.0, 1.0, width, device=theta.device, dtype=theta.dtype) if width > 1 else theta.new_zeros(1)
    v = torch.linspace(-1.0, 1.0, height, device=theta.device, dtype=theta.dtype) if height > 1 else theta.new_zeros(1)
    grid = theta.new_empty(theta.shape[0], 2, height, width).permute(0, 2, 3, 1)  # x and y planes: contiguous writes
    for axis in range(2):
        row = theta[:, axis, 0, None] * u + theta[:, axis, 2, None]  # (N, W)
        torch.add(row[:, None, :], theta[:, axis, 1, None, None] * v[:, None], out=grid[..., axis])
    return grid


def _elastic_apply(x: Tensor, alpha: float, sigma: float, theta: Tensor, fields: Tensor | None) -> Tensor:
    """Warp by the affine ``theta`` (N, 2, 3), then displace by ``alpha * smooth(fields)`` (N, 2, H, W) and clip."""
    n, c, height, width = x.shape
    # (1) random affine: cv2.warpAffine(bilinear, BORDER_REFLECT_101) == grid_sample(reflection, align_corners=True)
    grid = _affine_grid(theta.to(device=x.device, dtype=x.dtype), height, width)
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
    if alpha == 0 or fields is None:  # no displacement: map_coordinates at the pixel centres returns the pixels
        return warped.clamp_(0.0, 1.0)

    # (2) smoothed displacement, sampled like scipy map_coordinates(order=1, mode='reflect') == grid_sample(reflection,
    # align_corners=False): both are half-sample symmetric about -0.5 and size - 0.5.
    displacement = _gaussian_filter_reflect(fields.to(device=x.device, dtype=x.dtype), sigma)  # (N, 2, H, W)
    base_x = torch.arange(width, device=x.device, dtype=x.dtype).mul_(2.0 / width).add_(1.0 / width - 1.0)
    base_y = torch.arange(height, device=x.device, dtype=x.dtype).mul_(2.0 / height).add_(1.0 / height - 1.0)
    torch.add(base_x, displacement[:, 0], alpha=2.0 * alpha / width, out=grid[..., 0])
    torch.add(base_y[:, None], displacement[:, 1], alpha=2.0 * alpha / height, out=grid[..., 1])
    out = F.grid_sample(warped, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.clamp_(0.0, 1.0)


def _elastic_warp(x: Tensor, severity_param: Sequence[float], jitter: Tensor, fields: Tensor | None) -> Tensor:
    """The elastic transform with given random draws (the parity tests inject them here).

    Args:
        x: Float images (N, C, H, W) in the working dtype.
        severity_param: ``(alpha, sigma, affine_jitter)`` in pixels.
        jitter: (N, 3, 2) offsets in [-1, 1] of the three affine points (scaled by ``affine_jitter`` here).
        fields: (N, 2, H, W) values in [-1, 1], the raw x and y displacement fields (smoothed and scaled here);
            ignored (may be None) when ``alpha == 0``.
    """
    alpha, sigma, affine_jitter = (float(v) for v in severity_param)
    theta = _affine_theta(jitter.to(x.device), affine_jitter, x.shape[2], x.shape[3])
    return _elastic_apply(x, alpha, sigma, theta, fields)


@register("elastic_transform", "digital")
def elastic_transform(images: Tensor, severity_param: Sequence[float], seeds: Tensor) -> Tensor:
    """Original ImageNet-C elastic transform: random affine, then a random smooth displacement field.

    ``severity_param = (alpha, sigma, j)`` in pixels. (1) The three points ``centre + k``, ``(cy + k, cx - k)``,
    ``centre - k`` (``k = min(H, W) // 3``) are moved by U(-j, j) each, and the image is warped by the affine map
    between them (bilinear, reflect-101 border, like ``cv2.warpAffine``). (2) ``dx, dy = alpha * gaussian(U(-1, 1)
    field, sigma, reflect, truncate 3)``; the warped image is sampled bilinearly at ``(y + dy, x + dx)`` with a
    half-sample reflect border (``scipy.ndimage.map_coordinates(order=1, mode='reflect')``). All draws come from the
    per-image seeds. Works for any number of channels (all channels move together).
    """
    x, seeds = prepare_images(images, seeds)
    n, _, height, width = x.shape
    if min(height, width) < 3:
        raise ValueError(f"elastic_transform needs images of at least 3 x 3 pixels, got {height} x {width}")
    if n == 0:
        return images.clone()
    alpha, sigma, affine_jitter = (float(v) for v in severity_param)
    draw_device = "cpu" if x.device.type == "mps" else x.device  # MPS has no float64
    jitter = rng.uniform(seeds, (3, 2), _STREAM_AFFINE, device=draw_device, dtype=torch.float64, low=-1.0)
    theta = _affine_theta(jitter, affine_jitter, height, width).to(device=x.device, dtype=x.dtype)

    def warp(chunk: Tensor, chunk_seeds: Tensor, chunk_theta: Tensor) -> Tensor:
        fields = None
        if alpha != 0:  # U(-1, 1), drawn in float32 for any dtype
            fields = rng.uniform(chunk_seeds, (2, height, width), _STREAM_FIELD, low=-1.0).to(chunk.dtype)
        return _elastic_apply(chunk, alpha, sigma, chunk_theta, fields)

    # 4x the usual chunk (7 images at 224 px): the fields are smoothed by GEMMs, faster on more rows
    return map_image_chunks(warp, x, seeds, theta, max_elements=4 * _CPU_CHUNK_ELEMENTS).to(images.dtype)
