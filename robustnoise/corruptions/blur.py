"""Blur corruptions of ImageNet-C (Hendrycks & Dietterich 2019): Gaussian, defocus, zoom, motion and glass blur.

Ports of ``make_imagenet_c.py`` (and of the numpy motion blur of ``imagecorruptions``, which replaces ImageMagick's
``MotionBlurImage``). float64 is computed in float64, every other dtype in float32; the random draws (motion angle,
glass offsets) are keyed by each image's seed. Parity with the oracle: ``docs/parity/blur.md``.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from robustnoise.corruptions import rng
from robustnoise.corruptions.api_types import prepare_images
from robustnoise.corruptions.filters import (
    correlate1d,
    correlate2d,
    gaussian_filter,
    map_image_chunks,
    opencv_gaussian_kernel1d,
    pad2d,
    working_dtype,
)
from robustnoise.corruptions.presets import DefocusBlur, GlassBlur, MotionBlur, ZoomRange, zoom_factors
from robustnoise.corruptions.registry import register

__all__ = [
    "defocus_blur",
    "defocus_kernel",
    "gaussian_blur",
    "glass_blur",
    "motion_blur",
    "motion_blur_angles",
    "zoom_blur",
]

_MOTION_ANGLE_STREAM = 1
_GLASS_OFFSET_STREAM = 2

# Defocus kernel taps below this fraction of the largest tap (e.g. the exp(-50) tails of a 3x3 Gaussian with sigma
# 0.1) are dropped: they change no output by more than 1e-12 and would cost a pass each.
_DEFOCUS_TAP_FLOOR = 1e-12
_CHUNK_ELEMENTS = 1 << 19  # CPU chunks of about this many values (2 MiB of float32) keep the intermediates in cache


def _apply(fn: Callable[..., Tensor], images: Tensor, *per_image: Tensor, chunk_scale: int = 1) -> Tensor:
    """``fn`` on cache-sized chunks of the batch in the working dtype, clipped into the (input dtype) output."""
    dtype = working_dtype(images.dtype)
    out = torch.empty(images.shape, dtype=images.dtype, device=images.device)

    def run(chunk: Tensor, dest: Tensor, *args: Tensor) -> Tensor:
        result = fn(chunk.to(dtype), *args)
        return torch.clamp(result, 0.0, 1.0, out=dest) if dest.dtype == dtype else dest.copy_(result.clamp_(0.0, 1.0))

    return map_image_chunks(run, images, *per_image, max_elements=_CHUNK_ELEMENTS * chunk_scale, out=out, into=True)


# Gaussian blur (holdout corruption)


@register("gaussian_blur", "blur")
def gaussian_blur(images: Tensor, severity_param: float, seeds: Tensor) -> Tensor:
    """skimage ``gaussian(x, sigma=c)``: separable Gaussian, replicate border, truncate 4 (radius ``int(4c + 0.5)``)."""
    prepare_images(images, seeds)
    sigma = float(severity_param)
    return _apply(lambda chunk: gaussian_filter(chunk, sigma), images)


# Defocus blur


def defocus_kernel(radius: float, alias_blur: float) -> Tensor:
    """ImageNet-C's anti-aliased ``disk(radius, alias_blur)`` as a float64 (k, k) tensor: the normalised indicator of
    ``X^2 + Y^2 <= radius^2`` on ``-8..8`` (radius <= 8; else ``np.arange(-radius, radius + 1)``), smoothed like
    ``cv2.GaussianBlur`` (3x3, or 5x5 above radius 8; reflect-101 at the grid edge, as the reference)."""
    radius = float(radius)
    extent = max(8.0, radius)
    grid = torch.arange(-extent, extent + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    disk = (xx * xx + yy * yy <= radius * radius).to(torch.float64)
    disk /= disk.sum()
    g = opencv_gaussian_kernel1d(3 if radius <= 8 else 5, float(alias_blur))
    return correlate1d(correlate1d(disk, g, -1, "reflect"), g, -2, "reflect")


@register("defocus_blur", "blur")
def defocus_blur(images: Tensor, severity_param: DefocusBlur, seeds: Tensor) -> Tensor:
    """Each channel correlated with :func:`defocus_kernel` (``cv2.filter2D``, reflect-101 border)."""
    prepare_images(images, seeds)
    radius, alias = severity_param
    kernel = defocus_kernel(radius, alias)
    kernel = torch.where(kernel.abs() >= _DEFOCUS_TAP_FLOOR * kernel.abs().max(), kernel, 0.0)
    return _apply(lambda chunk: correlate2d(chunk, kernel, "reflect"), images)


# Zoom blur


def _zoom_taps(size: int, factor: float, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Linear-interpolation taps (lower index, upper index, upper weight) of ImageNet-C's ``clipped_zoom`` along one
    axis: the centre crop of ``ch = ceil(size / factor)`` pixels, ``scipy.ndimage.zoom(order=1)`` to
    ``round(ch * factor)`` pixels (output ``o`` samples ``o (ch - 1) / (out - 1)``), the centred ``size`` pixels."""
    ch = math.ceil(size / factor)
    top = (size - ch) // 2
    out = int(round(ch * factor))
    ratio = (ch - 1) / (out - 1) if out > 1 else 0.0
    trim = (out - size) // 2
    pos = torch.arange(trim, trim + size, dtype=torch.float64) * ratio
    lower = torch.floor(pos).clamp_(0, ch - 1)
    frac = (pos - lower).clamp_(0.0, 1.0)
    lower = lower.to(torch.int64)
    upper = (lower + 1).clamp_(max=ch - 1)
    return (lower + top).to(device), (upper + top).to(device), frac.to(device=device, dtype=dtype)


def _zoom_operator_cpu(height: int, width: int, factors: tuple[float, ...]) -> tuple[Tensor, Tensor, Tensor]:
    """CSR arrays (row pointers, columns, float64 values) of the linear map x -> zoom-blurred x on H W pixels: row p
    holds the coalesced bilinear taps of pixel p over all factors plus the identity, divided by ``len(factors) + 1``."""
    hs, hw_, cs, cw_ = [], [], [], []
    for z in factors:
        r0, r1, rf = _zoom_taps(height, z, torch.device("cpu"), torch.float64)
        c0, c1, cf = _zoom_taps(width, z, torch.device("cpu"), torch.float64)
        hs += [r0, r1]
        hw_ += [1.0 - rf, rf]
        cs += [c0, c1]
        cw_ += [1.0 - cf, cf]
    rows, row_w, cols, col_w = torch.stack(hs), torch.stack(hw_), torch.stack(cs), torch.stack(cw_)  # (2k, size)
    k = len(factors)
    pair = torch.arange(k).repeat_interleave(4) * 2
    ia = pair + torch.tensor([0, 0, 1, 1]).repeat(k)  # (factor, lower/upper row) of each of the 4 taps
    ib = pair + torch.tensor([0, 1, 0, 1]).repeat(k)
    keys = rows[ia].T.reshape(height, 1, -1) * width + cols[ib].T.reshape(1, width, -1)
    vals = row_w[ia].T.reshape(height, 1, -1) * col_w[ib].T.reshape(1, width, -1)
    ident = (torch.arange(height).view(height, 1) * width + torch.arange(width).view(1, width)).unsqueeze(-1)
    keys = torch.cat([keys, ident], -1).reshape(height * width, -1)
    vals = torch.cat([vals, torch.ones(height, width, 1, dtype=torch.float64)], -1).reshape(height * width, -1)
    keys, order = torch.sort(keys, dim=1)
    vals = vals.gather(1, order)
    first = torch.ones_like(keys, dtype=torch.bool)
    first[:, 1:] = keys[:, 1:] != keys[:, :-1]
    segment = torch.cumsum(first, dim=1) - 1
    summed = torch.zeros_like(vals).scatter_add_(1, segment, vals)
    unique = torch.zeros_like(keys).scatter_(1, segment, keys)
    keep = (torch.arange(keys.shape[1]).view(1, -1) <= segment[:, -1:]) & (summed != 0)
    crow = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(keep.sum(1), 0)])
    return crow, unique[keep], summed[keep] / (k + 1)


@functools.lru_cache(maxsize=5)
def _zoom_operator(
    height: int, width: int, factors: tuple[float, ...], device: torch.device, dtype: torch.dtype
) -> Tensor:
    """The cached sparse CSR zoom-blur operator on ``device`` (about 0.25 s to build and 12 MB in float32 at 224 px)."""
    crow, col, val = _zoom_operator_cpu(height, width, factors)
    index_dtype = torch.int32 if height * width * 2 < 2**31 else torch.int64  # int32: no conversion per MKL call
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse.*")
        return torch.sparse_csr_tensor(
            crow.to(device, index_dtype),
            col.to(device, index_dtype),
            val.to(device, dtype),
            (height * width, height * width),
        )


def _zoom_sum(x: Tensor, factors: tuple[float, ...]) -> Tensor:
    """``(x + sum_z clipped_zoom(x, z)) / (len(factors) + 1)`` of a chunk (n, C, H, W): one sparse matmul with the
    images as columns (devices other than CPU and CUDA have no sparse CSR matmul: they use the CPU)."""
    n, c, h, w = x.shape
    device = x.device if x.device.type in ("cpu", "cuda") else torch.device("cpu")
    op = _zoom_operator(h, w, factors, device, x.dtype)
    cols = x.reshape(n * c, h * w).t().to(device).contiguous()  # MKL: images as row-major columns
    out = torch.empty_like(cols)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        torch.addmm(out, op, cols, beta=0, out=out)  # in place with beta 0: no zero fill, no copy (torch.mm has both)
    return out.t().contiguous().view(n, c, h, w).to(x.device)  # 2-D transposing copies go in cache-sized blocks


@register("zoom_blur", "blur")
def zoom_blur(images: Tensor, severity_param: ZoomRange, seeds: Tensor) -> Tensor:
    """Mean of the image and its clipped zooms by every factor of ``np.arange(*severity_param)``, as one cached sparse
    linear operator on the pixels. Each zoom trims at the *centre*, as ImageNet-C's ``clipped_zoom``
    (``imagecorruptions`` trims at the top-left: the same for every tabulated factor, see the tests)."""
    prepare_images(images, seeds)
    factors = zoom_factors(ZoomRange(*severity_param))
    return _apply(lambda chunk: _zoom_sum(chunk, factors), images, chunk_scale=4)  # wider sparse products


# Motion blur


def _motion_taps(
    angles: Tensor, radius: float, sigma: float, height: int, width: int, stop_at_edge: bool = True
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Weights (K,), shifts dy, dx (N, K) and valid (N, K) taps of ``imagecorruptions._motion_blur`` (float64, CPU).

    ``2 radius + 1`` taps ``i`` weighted ``exp(-i^2 / (2 sigma^2))`` (normalised) read the image shifted by
    ``-ceil(i sin(angle) - 1/2)``, ``-ceil(i cos(angle) - 1/2)``. The port stops at the first tap whose shift reaches
    the image size (not renormalised); ImageMagick's ``MotionBlurImage`` (``stop_at_edge=False``) does not.
    """
    k = int(2 * radius + 1)
    i = torch.arange(k, dtype=torch.float64)
    weights = torch.exp(-(i * i) / (2.0 * float(sigma) ** 2))
    weights /= weights.sum()
    rad = torch.deg2rad(angles.to("cpu", torch.float64)).unsqueeze(1)
    p0, p1 = k * torch.sin(rad), k * torch.cos(rad)
    hyp = torch.hypot(p0, p1)
    dy = -torch.ceil(i * p0 / hyp - 0.5)
    dx = -torch.ceil(i * p1 / hyp - 0.5)
    if stop_at_edge:
        inside = (dy.abs() < height) & (dx.abs() < width)
        valid = torch.cumprod(inside.to(torch.int64), dim=1).bool()
    else:
        valid = torch.ones_like(dy, dtype=torch.bool)
    return weights, dy.to(torch.int64), dx.to(torch.int64), valid


def motion_blur_angles(
    images: Tensor, radius: float, sigma: float, angles: Tensor, stop_at_edge: bool = True
) -> Tensor:
    """Unclipped motion blur of a batch with one angle (degrees, (N,)) per image (:func:`_motion_taps`).

    Per image, one in-place multiply-add per tap of a slice of the edge-padded image (2.5-3x faster on the CPU at
    224 px than one gather of the whole batch per tap; 1.35-2x slower at 32 px, +0.1 ms per CIFAR image in all).
    """
    n, c, h, w = images.shape
    weights, dy, dx, valid = _motion_taps(angles, radius, sigma, h, w, stop_at_edge)
    dy, dx = torch.where(valid, dy, 0), torch.where(valid, dx, 0)
    out = images * float(weights[0])  # tap 0 is never shifted
    if weights.numel() == 1 or n == 0:
        return out
    top, bottom = max(0, int(dy.max())), max(0, int(-dy.min()))
    left, right = max(0, int(dx.max())), max(0, int(-dx.min()))
    padded = pad2d(images, top, bottom, left, right, "replicate")
    rows, cols = (top - dy).tolist(), (left - dx).tolist()  # where tap t of image k starts reading
    weight_list, valid_list = weights.tolist(), valid.tolist()
    for k in range(n):
        acc, src = out[k], padded[k]
        for t in range(1, len(weight_list)):
            if not valid_list[k][t]:
                break
            y, x = rows[k][t], cols[k][t]
            acc.add_(src[:, y : y + h, x : x + w], alpha=weight_list[t])
    return out


@register("motion_blur", "blur")
def motion_blur(images: Tensor, severity_param: MotionBlur, seeds: Tensor) -> Tensor:
    """Motion blur along a random direction: angle ~ U(-45, 45) degrees per image (``imagecorruptions`` numpy port
    of ImageMagick's ``MotionBlurImage``, used by ImageNet-C through Wand).

    The released ImageNet-C ran ImageMagick, which writes its result as 8-bit PNG, **rounded**; the numpy port
    returns the float blur, which the generation script then truncates (about 0.5 grey level darker on average).
    Like elastic and frost, this follows the original: the blur is rounded to the 1/255 grid.
    """
    _, seeds = prepare_images(images, seeds)
    radius, sigma = severity_param
    angles = rng.uniform(seeds, (1,), stream=_MOTION_ANGLE_STREAM, device="cpu", dtype=torch.float64)[:, 0]
    angles = angles * 90.0 - 45.0

    def run(chunk: Tensor, a: Tensor) -> Tensor:
        return motion_blur_angles(chunk, radius, sigma, a).mul_(255.0).round_().div_(255.0)  # clipped by _apply

    return _apply(run, images, angles)


# Glass blur


def _glass_offsets(
    seeds: Tensor, max_delta: int, iterations: int, rows: int, cols: int, dtype: torch.dtype = torch.int64
) -> tuple[Tensor, Tensor]:
    """Offsets ``dx, dy`` (N, iterations, rows, cols), each uniform on ``{-d, ..., d-1}`` like ``randint(-d, d)``, of
    the scanned pixels h = d+1..H-d, w = d+1..W-d.

    One float64 uniform ``u`` carries the pairs of ``k`` pixels as the base-``(2d)^2`` digits of
    ``floor(u (2d)^(2k))``: exactly uniform with ``(2d)^(2k) <= 2^24`` when ``2d`` is a power of two, otherwise with
    ``(2d)^(2k) <= 2^16`` (relative bias below 2^-15).
    """
    span = 2 * max_delta
    m = span * span
    count = rows * cols
    power_of_two = span & (span - 1) == 0
    budget = 24 if power_of_two else 16
    per_word = max(1, int(budget * math.log(2.0) / math.log(m) + 1e-9)) if m > 1 else 1
    words = -(-count // per_word)
    device = torch.device("cpu") if seeds.device.type == "mps" else seeds.device  # no float64 on MPS
    u = rng.uniform(seeds, (iterations, words), stream=_GLASS_OFFSET_STREAM, device=device, dtype=torch.float64)
    # Digit j of every draw goes to pixels j * words ... (j + 1) * words - 1 (a fixed bijection), so each step below is
    # one long elementwise op.
    if power_of_two:
        v = torch.floor(u.mul_(float(m**per_word))).to(dtype)  # (N, iterations, words)
        span_bits = span.bit_length() - 1
        shifts = torch.arange(0, 2 * span_bits * per_word, 2 * span_bits, dtype=dtype, device=v.device)
        q = (v[:, :, None, :] >> shifts[:, None]).flatten(2)[:, :, :count]  # digit j at j * words + (0..words - 1)
        dx = torch.bitwise_and(q, span - 1).sub_(max_delta)
        dy = q.bitwise_right_shift_(span_bits).bitwise_and_(span - 1).sub_(max_delta)
    else:
        # The base-m digits of v = floor(u m^k), least significant first, peeled off u from the most significant one:
        # u <- frac(u) m is exact in float64 (u has 31 random bits, and k m-ary digits add at most 16 more). A table
        # splits each digit into (dx, dy) (integer division has no vector instructions on the CPU).
        q = torch.empty(len(seeds), iterations, per_word, words, dtype=dtype, device=u.device)
        for j in reversed(range(per_word)):
            digit = torch.floor(u.mul_(float(m)))
            u.sub_(digit)
            q[:, :, j] = digit
        q = q.view(len(seeds), iterations, -1)[:, :, :count].reshape(-1)
        table = torch.arange(m, dtype=dtype, device=q.device)
        dx = (table % span - max_delta).index_select(0, q)
        dy = (table // span - max_delta).index_select(0, q)
    shape = (len(seeds), iterations, rows, cols)
    return dx.reshape(shape).to(seeds.device), dy.reshape(shape).to(seeds.device)


def _glass_scan_map(dx: Tensor, dy: Tensor, height: int, width: int, max_delta: int) -> Tensor:
    """Source pixel of every output pixel after ImageNet-C's sequential glass "swap" passes, int64 (N, H W).

    The reference visits h = H-d .. d+1 and, inside, w = W-d .. d+1 (reverse raster order), and for each pixel p does
    ``x[p], x[p'] = x[p'], x[p]`` with ``p' = (h + dy, w + dx)``. With numpy (or numba) views that is a one-way copy
    ``x[p] <- x[p']``. So after a pass, ``new(p) = new(p')`` if ``p'`` was visited before ``p`` (inside the scanned
    region and later in raster order), else ``old(p')``. Following these "forward" links from p ends at a pixel r
    whose own source is not forward, and ``new(p) = old(src(r))``. The chains are resolved for all scanned pixels of
    all images at once by pointer jumping (``next = next[next]`` until nothing changes): O(N H W log L) work per pass
    for chains of length <= L (L ~ log(H W) for random offsets: 4-6 rounds at 224 px; none at all for d = 1) instead
    of the reference's N H W sequential steps. Passes compose by gathering the index maps.

    Args:
        dx, dy: Integer (N, iterations, H - 2d, W - 2d): the offsets of the scanned pixels, h = d+1.., w = d+1...
    """
    n, iterations, rows, cols = dx.shape
    dev = dx.device
    hw = height * width
    index_dtype = torch.int32 if n * hw < 2**31 else torch.int64  # index_select takes int32 indices
    base = torch.arange(n * hw, device=dev, dtype=index_dtype)  # flat pixel index over the whole chunk
    total = base.clone()
    lo = max_delta + 1
    scanned = base.view(n, height, width)[:, lo : lo + rows, lo : lo + cols]
    local = torch.arange(n * rows * cols, device=dev, dtype=index_dtype)  # index among the scanned pixels
    for it in range(iterations if rows > 0 and cols > 0 else 0):
        ddx, ddy = dx[:, it].to(index_dtype), dy[:, it].to(index_dtype)
        off = torch.add(ddx, ddy, alpha=width)  # p' - p in flat indices
        src = (scanned + off).view(-1)  # the source of every scanned pixel, if no chain is involved
        if max_delta > 1:  # offsets in {-1, 0}^2 never point forward
            forward = _forward_links(off, ddx, ddy, max_delta)
            nxt = local + torch.add(ddx, ddy, alpha=cols).mul_(forward).view(-1)  # forward links among scanned pixels
            while True:  # pointer jumping: nxt[p] becomes the end of p's chain of forward links
                jumped = nxt.index_select(0, nxt)
                if torch.equal(jumped, nxt):
                    break
                nxt = jumped
            src = src.index_select(0, nxt)  # new(p) = old(src(end of p's chain))
        source = src if it == 0 else total.index_select(0, src)
        total.view(n, height, width)[:, lo : lo + rows, lo : lo + cols] = source.view(n, rows, cols)
    return total.view(n, hw).long().sub_(torch.arange(n, device=dev).view(n, 1) * hw)


def _forward_links(off: Tensor, dx: Tensor, dy: Tensor, max_delta: int) -> Tensor:
    """Scanned pixels whose source lies later in raster order (``off > 0``) and inside the scanned region (only the
    last ``d - 1`` rows and the first and last ``d`` columns can point outside it: only those are checked)."""
    rows, cols = off.shape[-2:]
    d = max_delta
    forward = off > 0
    ar = functools.partial(torch.arange, device=off.device, dtype=off.dtype)
    if d > 1 and rows > d - 1:
        bottom = slice(rows - d + 1, rows)
        forward[:, bottom, :] &= dy[:, bottom, :] < rows - ar(rows - d + 1, rows).view(-1, 1)
    left, right = slice(0, min(d, cols)), slice(max(0, cols - d), cols)
    forward[:, :, left] &= dx[:, :, left] >= -ar(0, min(d, cols)).view(1, -1)
    forward[:, :, right] &= dx[:, :, right] < cols - ar(max(0, cols - d), cols).view(1, -1)
    return forward


def _glass_blur(images: Tensor, sigma: float, max_delta: int, dx: Tensor, dy: Tensor) -> Tensor:
    """Unclipped glass blur with given offsets (:func:`_glass_offsets`): Gaussian blur, uint8 truncation, the
    sequential copy passes of :func:`_glass_scan_map`, Gaussian blur."""
    n, c, h, w = images.shape
    blurred = gaussian_filter(images, sigma)
    # uint8 truncation. float64 reproduces the reference bit for bit (including its float accidents, e.g. a flat 255
    # region becoming 254 at sigma 1.1); float32 first adds 2^-14 so that values that are whole grey levels in exact
    # arithmetic (flat regions) are not truncated one level down by float32 rounding.
    eps = 0.0 if images.dtype == torch.float64 else 2.0**-14
    quantised = blurred.mul_(255.0).add_(eps).clamp_(0.0, 255.0).floor_().div_(255.0)
    index = _glass_scan_map(dx.to(images.device), dy.to(images.device), h, w, max_delta)  # (N, H W)
    # One index map per image, shared by its channels: a gather along the pixels (no per-channel index tensor).
    moved = quantised.view(n, c, h * w).gather(2, index.view(n, 1, h * w).expand(n, c, h * w)).view(n, c, h, w)
    return gaussian_filter(moved, sigma)


@register("glass_blur", "blur")
def glass_blur(images: Tensor, severity_param: GlassBlur, seeds: Tensor) -> Tensor:
    """Glass blur: Gaussian blur, ``iterations`` passes of local pixel copies with random offsets in
    ``{-d, ..., d-1}^2`` (ImageNet-C's sequential "swap" loop, resolved exactly by :func:`_glass_scan_map`), blur."""
    _, seeds = prepare_images(images, seeds)
    sigma, max_delta, iterations = severity_param
    max_delta, iterations = int(max_delta), int(iterations)
    n, c, h, w = images.shape
    rows, cols = max(0, h - 2 * max_delta), max(0, w - 2 * max_delta)

    def run(chunk: Tensor, chunk_seeds: Tensor) -> Tensor:
        dx, dy = _glass_offsets(chunk_seeds, max_delta, iterations, rows, cols, torch.int32)
        return _glass_blur(chunk, float(sigma), max_delta, dx, dy)

    return _apply(run, images, seeds)
