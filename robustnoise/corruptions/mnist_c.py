"""The 15 MNIST-C corruptions (Mu & Gilmer 2019, "MNIST-C: A Robustness Benchmark for Computer Vision"), batched.

Ports of ``google-research/mnist-c`` ``corruptions.py`` at the severity of the released dataset (each function's
default), for float images (N, C, H, W) in [0, 1] on any device, computed in float64 for float64 and float32
otherwise; each channel is corrupted like a grayscale image with the same per-image draws. Other sizes than 28 x 28
generalise the geometry (e.g. affine maps fix the centre ((W-1)/2, (H-1)/2)).

The reference ran on 2-D uint8 arrays with the scikit-image of 2019, and the released files carry two consequences
that these ports keep: ``glass_blur``'s ``gaussian(..., multichannel=True)`` on a 2-D array blurs **vertically only**
and its swap is a true swap (not ImageNet-C's one-way copy); ``shear`` is ``AffineTransform(shear=s)`` of that time,
``[[1, -sin s], [0, cos s]]`` (scikit-image >= 0.20: ``[[1, -tan s], [0, 1]]``). Parity: ``docs/parity/mnist_c.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from robustnoise.corruptions import blur, noise, rng, weather
from robustnoise.corruptions.filters import map_image_chunks, pad2d, working_dtype
from robustnoise.corruptions.presets import MNISTC_PRESET, Fog, GlassBlur, MotionBlur, Spatter
from robustnoise.corruptions.registry import register
from robustnoise.utils.errors import RobustnoiseError

# Parameters: the default severity of each function of mnist-c ``corruptions.py``.

SHOT_NOISE = 3.0  # severity 5: Poisson(x c) / c
IMPULSE_NOISE = 0.17  # severity 4: salt & pepper amount
GLASS_BLUR = GlassBlur(0.7, 1, 2)  # severity 1: (sigma, max_delta, iterations); swap probability 1/2
MOTION_BLUR = MotionBlur(10, 3)  # severity 1: (radius, sigma), angle U(-45, 45) degrees
SHEAR = 0.4  # severity 2, radians, random sign
SCALE = 1 / 0.7  # severity 3: inverse-map factor (content shrinks to 70 %)
ROTATE = 0.4  # severity 2, radians (22.9 degrees), random sign
BRIGHTNESS = 0.5  # severity 5: HSV value shift
TRANSLATE = 3  # severity 3: pixels, random sign per axis
FOG = Fog(3.0, 1.4)  # severity 5: (strength, wibble decay)
FOG_MAP_SIZE = 256  # plasma map size, cropped at the top left
SPATTER = Spatter(0.65, 0.3, 1, 0.65, 1.5, 1)  # severity 4: mud
LINE_DECAY = 2.3  # line profile: clip(log(1 - d / 2.3) + 1, 0, 1) at vertical distance d
ZIGZAG_LENGTH = 2.0  # a: half period along the line
ZIGZAG_WIDTH = 2.0  # b: amplitude
CANNY_SIGMA = 1.0
CANNY_LOW = float(np.float32(0.1))  # scikit-image passes the low threshold as a C float
CANNY_HIGH = 0.2

# Random streams (the per-image seeds are already specific to the corruption).
_STREAM_SIGN = 0
_STREAM_GLASS = 1
_STREAM_LINE = 2

_CHUNK_ELEMENTS = 1 << 16  # CPU: pixel values per chunk of images (84 MNIST digits); every image is independent
_FOG_CHUNK = 32  # images per chunk for fog (each padded to the 256 x 256 plasma map)


# Shared helpers


def _uniform(seeds: Tensor, count: int, stream: int) -> Tensor:
    """float64 uniforms (N, count) on the device of ``seeds`` (the CPU for MPS, which lacks float64)."""
    return rng.uniform(seeds, (count,), stream=stream, device=rng._compute_device(seeds.device), dtype=torch.float64)


def _randint(u: Tensor, low: int, high: int) -> Tensor:
    """``np.random.randint(low, high)`` from uniforms in [0, 1), as float64."""
    return torch.floor(u * (high - low)) + low


@functools.lru_cache(maxsize=16)
def _scipy_gaussian_weights(sigma: float, truncate: float = 4.0) -> tuple[float, ...]:
    """Taps of ``scipy.ndimage.gaussian_filter1d``, computed with numpy in scipy's order (bit-identical)."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (float(sigma) * float(sigma)) * x**2)
    return tuple((phi / phi.sum()).tolist())


def _gaussian1d(x: Tensor, sigma: float, dim: int, mode: str) -> Tensor:
    """``scipy.ndimage.gaussian_filter1d`` along ``dim`` (-2 rows, -1 columns), ``mode`` ``replicate`` or
    ``constant``, summed in scipy's order (``w0 x[i] + sum_{j = r..1} w_j (x[i - j] + x[i + j])``): with the shared
    ``filters.correlate1d`` glass blur's float64 bit-identity with the sequential reference fails."""
    weights = _scipy_gaussian_weights(float(sigma))
    r = len(weights) // 2
    size = x.shape[dim]
    padded = pad2d(x, r, r, 0, 0, mode) if dim == -2 else pad2d(x, 0, 0, r, r, mode)
    out = padded.narrow(dim, r, size) * weights[r]
    for j in range(r, 0, -1):
        out.add_(torch.add(padded.narrow(dim, r - j, size), padded.narrow(dim, r + j, size)).mul_(weights[r - j]))
    return out


def _mnistc(name: str) -> Callable[[Callable[[Tensor, Tensor], Tensor]], Callable[[Tensor, Tensor], Tensor]]:
    """Register ``fn(x, seeds)`` as MNIST-C corruption ``name`` (one fixed severity), run on chunks of images in the
    working dtype."""

    def decorate(fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
        def run(images: Tensor, param: None, seeds: Tensor) -> Tensor:
            if images.shape[-1] < 4 or images.shape[-2] < 4:
                raise RobustnoiseError(f"MNIST-C needs images of at least 4 x 4 pixels, got {tuple(images.shape)}")
            out = torch.empty_like(images, memory_format=torch.contiguous_format)
            work = working_dtype(images.dtype)
            return map_image_chunks(
                lambda x, s: fn(x.to(work), s), images, seeds, max_elements=_CHUNK_ELEMENTS, out=out
            )

        register(name, MNISTC_PRESET, {MNISTC_PRESET: (None,)})(run)
        return fn

    return decorate


# Noise, blur and weather: the ImageNet-C implementations with MNIST-C's parameters


@_mnistc("shot_noise")
def shot_noise(x: Tensor, seeds: Tensor) -> Tensor:
    """``clip(Poisson(3 x) / 3)`` (:func:`robustnoise.corruptions.noise.shot_noise`, c = 3)."""
    return noise.shot_noise(x, SHOT_NOISE, seeds)


@_mnistc("impulse_noise")
def impulse_noise(x: Tensor, seeds: Tensor) -> Tensor:
    """Salt and pepper, amount 0.17 (:func:`robustnoise.corruptions.noise.impulse_noise`)."""
    return noise.impulse_noise(x, IMPULSE_NOISE, seeds)


@_mnistc("motion_blur")
def motion_blur(x: Tensor, seeds: Tensor) -> Tensor:
    """Motion blur, radius 10, sigma 3, angle U(-45, 45) (:func:`robustnoise.corruptions.blur.motion_blur`)."""
    return blur.motion_blur(x, MOTION_BLUR, seeds)


@_mnistc("fog")
def fog(x: Tensor, seeds: Tensor) -> Tensor:
    """ImageNet-C fog (3.0, 1.4) with a 256 x 256 plasma map cropped at the top left, as MNIST-C does at 28 px:
    ``weather.fog`` on the image zero-padded to the map size, cropped back (the padding keeps the image maximum)."""
    h, w = x.shape[-2:]
    size = max(FOG_MAP_SIZE, 1 << (max(h, w) - 1).bit_length())
    chunks = zip(x.split(_FOG_CHUNK), seeds.split(_FOG_CHUNK))
    return torch.cat([weather.fog(F.pad(part, (0, size - w, 0, size - h)), FOG, s)[..., :h, :w] for part, s in chunks])


@_mnistc("spatter")
def spatter(x: Tensor, seeds: Tensor) -> Tensor:
    """Mud spatter (0.65, 0.3, 1, 0.65, 1.5) in grey 63/255: ``weather.spatter`` on the channel repeated as RGB, red
    channel kept (its mud colour is 63; the grayscale path would use the luma of the RGB mud colour)."""
    channels = [
        weather.spatter(x[:, k : k + 1].expand(-1, 3, -1, -1).contiguous(), SPATTER, seeds)[:, 0:1]
        for k in range(x.shape[1])
    ]
    return torch.cat(channels, dim=1)


@_mnistc("brightness")
def brightness(x: Tensor, seeds: Tensor) -> Tensor:
    """``clip(x + 0.5)``: gray -> RGB -> HSV, ``V <- clip(V + 0.5)``, back to gray is exactly this for gray pixels."""
    return (x + BRIGHTNESS).clamp_(0.0, 1.0)


@_mnistc("stripe")
def stripe(x: Tensor, seeds: Tensor) -> Tensor:
    """Invert the first and the last quarter of the columns (columns 0-6 and 21-27 at 28 px): ``1 - x``."""
    out = x.clone()
    q = x.shape[-1] // 4
    out[..., :q] = 1.0 - x[..., :q]
    out[..., x.shape[-1] - q :] = 1.0 - x[..., x.shape[-1] - q :]
    return out


# Glass blur


def _glass_draws(seeds: Tensor, height: int, width: int, iterations: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per visited pixel (rows and columns 2..H-1 / 2..W-1) and pass, from the top 3 bits of one float64 uniform:
    whether it swaps (probability 1/2) and ``dx, dy = randint(-1, 1)``; three tensors (N, iterations, H-2, W-2)."""
    rows, cols = height - 2, width - 2
    u = _uniform(seeds, iterations * rows * cols, _STREAM_GLASS).view(-1, iterations, rows, cols)
    code = torch.floor(u * 8.0).to(torch.int64).to(seeds.device)
    return (code & 1).bool(), -((code >> 1) & 1), -((code >> 2) & 1)


def _first_claimant(target_ext: Tensor, q: Tensor, after: Tensor, width: int) -> Tensor:
    """The smallest c in {q + 1, q + W, q + W + 1} with c > ``after`` and target(c) == q, else ``H W``
    (``target_ext`` (N, H W + 1): each pixel's swap partner, then a sentinel -1 for candidates past the end)."""
    hw = target_ext.shape[1] - 1
    best = torch.full_like(q, hw)
    for step in (width + 1, width, 1):  # decreasing, so the smallest valid candidate is written last
        c = q + step
        ok = (c > after) & (target_ext.gather(1, c.clamp(max=hw)) == q)
        best = torch.where(ok, c, best)
    return best


def _glass_swap_source(chosen: Tensor, dx: Tensor, dy: Tensor, height: int, width: int) -> Tensor:
    """Source index (int64 (N, H W)) of every pixel after MNIST-C's sequential swap passes (draws of
    :func:`_glass_draws`).

    Each pass visits p = (h, w) in reverse raster order and, if chosen, swaps p with t(p) = (h + dy, w + dx) <= p.
    Output pixel x first moves to t(x) at its own visit; after that its position q moves only when a later-visited
    c > q has t(c) = q, the first such c being the smallest of q + 1, q + W, q + W + 1. These "next" links form
    forests whose ends pointer jumping finds for all pixels at once; passes compose by gathering the maps.
    """
    n, iterations = chosen.shape[:2]
    hw = height * width
    dev = chosen.device
    pos = torch.arange(hw, device=dev).expand(n, hw)
    total = pos
    for it in range(iterations):
        offset = torch.zeros(n, height, width, dtype=torch.int64, device=dev)
        offset[:, 2:, 2:] = (dy[:, it] * width + dx[:, it]) * chosen[:, it]
        target = pos + offset.view(n, hw)
        target_ext = torch.cat([target, torch.full((n, 1), -1, dtype=torch.int64, device=dev)], dim=1)
        nxt = _first_claimant(target_ext, pos, pos, width)
        nxt = torch.where(nxt == hw, pos, nxt)  # chain ends are fixed points
        # pointer jumping: links only go forward, so this ends after log2(longest chain) rounds
        while not torch.equal(jumped := nxt.gather(1, nxt), nxt):
            nxt = jumped
        start = _first_claimant(target_ext, target, pos, width)
        src = torch.where(start == hw, target, nxt.gather(1, start.clamp(max=hw - 1)))
        src = torch.where(target != pos, src, nxt)
        total = total.gather(1, src)
    return total


@_mnistc("glass_blur")
def glass_blur(x: Tensor, seeds: Tensor) -> Tensor:
    """ImageNet-C's glass blur (0.7, 1, 2) as MNIST-C ran it: vertical Gaussian blur -> uint8 truncation -> 2 passes
    of true swaps with (h + dy, w + dx), each with probability 1/2 -> vertical Gaussian blur -> clip."""
    n, c, h, w = x.shape
    chosen, dx, dy = _glass_draws(seeds, h, w, int(GLASS_BLUR.iterations))
    blurred = _gaussian1d(x, GLASS_BLUR.sigma, -2, "replicate")
    # float64 truncates exactly like the reference; float32 first adds 2**-14 grey levels so that values on the 1/255
    # grid in exact arithmetic are not truncated one level down by float32 rounding.
    eps = 0.0 if x.dtype == torch.float64 else 2.0**-14
    quantised = torch.floor(blurred.mul_(255.0).add_(eps).clamp_(0.0, 255.0)).div_(255.0)
    index = _glass_swap_source(chosen, dx, dy, h, w).unsqueeze(1).expand(n, c, h * w)
    moved = quantised.reshape(n, c, h * w).gather(2, index).view(n, c, h, w)
    return _gaussian1d(moved, GLASS_BLUR.sigma, -2, "replicate").clamp_(0.0, 1.0)


# Affine transforms (scikit-image ``transform.warp`` semantics)


def warp_affine(x: Tensor, matrix: Tensor) -> Tensor:
    """scikit-image ``transform.warp(x, inverse_map=AffineTransform(matrix))`` with its defaults, per image.

    ``matrix`` (N or 1, 2, 3) maps output pixel (column, row, 1) to input (column, row). Bilinear as scikit-image's
    (``(1 - dr) ((1 - dc) tl + dc tr) + dr ((1 - dc) bl + dc br)``), neighbours outside the image read as 0, clipped
    to [0, 1]; coordinates in float64 (float32 on MPS).
    """
    n, c, h, w = x.shape
    cdt = torch.float32 if x.device.type == "mps" else torch.float64
    m = matrix.to(device=x.device, dtype=cdt).expand(n, 2, 3)
    cols = torch.arange(w, device=x.device, dtype=cdt).view(1, 1, w)
    rows = torch.arange(h, device=x.device, dtype=cdt).view(1, h, 1)

    def coord(k: int) -> Tensor:
        a, b, t = (m[:, k, j].view(n, 1, 1) for j in range(3))
        return (a * cols + b * rows) + t  # (N, H, W)

    xc, yr = coord(0), coord(1)
    c0, r0 = torch.floor(xc), torch.floor(yr)
    dc, dr = (xc - c0).to(x.dtype), (yr - r0).to(x.dtype)
    c0, r0 = c0.to(torch.int64), r0.to(torch.int64)
    flat = x.reshape(n, c, h * w)

    def pixel(r: Tensor, col: Tensor) -> Tensor:
        inside = (r >= 0) & (r < h) & (col >= 0) & (col < w)
        index = (r.clamp(0, h - 1) * w + col.clamp(0, w - 1)).view(n, 1, h * w).expand(n, c, h * w)
        return flat.gather(2, index).view(n, c, h, w) * inside.unsqueeze(1)

    dc, dr = dc.unsqueeze(1), dr.unsqueeze(1)
    top = (1 - dc) * pixel(r0, c0) + dc * pixel(r0, c0 + 1)
    bottom = (1 - dc) * pixel(r0 + 1, c0) + dc * pixel(r0 + 1, c0 + 1)
    return ((1 - dr) * top + dr * bottom).clamp_(0.0, 1.0)


def _centred(linear: Tensor, height: int, width: int) -> Tensor:
    """(N, 2, 3) maps with linear parts ``linear`` ((N, 4) or (4,), row-major, float64) that fix the image centre:
    ``t = centre - A centre``, written as MNIST-C's ``13.5 (1 - a1 - a2)`` when the image is square."""
    linear = linear.view(-1, 2, 2)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    if cx == cy:
        t = cx * (1 - linear[:, :, 0] - linear[:, :, 1])
    else:
        centre = torch.tensor([cx, cy], dtype=linear.dtype, device=linear.device)
        t = centre - (linear * centre).sum(-1)
    return torch.cat([linear, t.unsqueeze(-1)], dim=2)


def _random_signs(seeds: Tensor, count: int) -> Tensor:
    """``np.random.choice([-1, 1])``: float64 (N, count) of +-1."""
    return torch.where(_uniform(seeds, count, _STREAM_SIGN) < 0.5, -1.0, 1.0).to(torch.float64)


def shear_matrices(signs: Tensor, height: int = 28, width: int = 28) -> Tensor:
    """Inverse maps of shear by ``s = 0.4 sign``: scikit-image < 0.20 ``shear=s``, ``[[1, -sin s], [0, cos s]]``."""
    s = SHEAR * signs.to(torch.float64)
    linear = torch.stack([torch.ones_like(s), -torch.sin(s), torch.zeros_like(s), torch.cos(s)], -1)
    return _centred(linear, height, width)


@_mnistc("shear")
def shear(x: Tensor, seeds: Tensor) -> Tensor:
    """Shear by 0.4 rad with a random sign about the centre."""
    return warp_affine(x, shear_matrices(_random_signs(seeds, 1)[:, 0], *x.shape[-2:]))


@_mnistc("scale")
def scale(x: Tensor, seeds: Tensor) -> Tensor:
    """Shrink the content to 70 % about the centre (inverse map ``diag(1/0.7)``)."""
    return warp_affine(x, _centred(torch.tensor([SCALE, 0.0, 0.0, SCALE], dtype=torch.float64), *x.shape[-2:]))


@_mnistc("rotate")
def rotate(x: Tensor, seeds: Tensor) -> Tensor:
    """Rotate by 0.4 rad (22.9 degrees) with a random sign about the centre."""
    s = ROTATE * _random_signs(seeds, 1)[:, 0]
    cos, sin = torch.cos(s), torch.sin(s)
    return warp_affine(x, _centred(torch.stack([cos, -sin, sin, cos], -1), *x.shape[-2:]))


@_mnistc("translate")
def translate(x: Tensor, seeds: Tensor) -> Tensor:
    """Shift by 3 px along each axis, random signs, zero fill: ``out[r, c] = x[r + 3 s_y, c + 3 s_x]``."""
    t = TRANSLATE * _random_signs(seeds, 2)
    eye = torch.eye(2, dtype=torch.float64, device=t.device).expand(len(t), 2, 2)
    return warp_affine(x, torch.cat([eye, t.unsqueeze(-1)], dim=2))


# Lines


def line_masks(c0: Tensor, r0: Tensor, c1: Tensor, r1: Tensor, height: int, width: int) -> Tensor:
    """MNIST-C's line from (c0, r0) to (c1, r1) (float64, shape S) as (*S, H, W) float64: ``clip(log(1 - d / 2.3) + 1,
    0, 1)`` at vertical distance ``d``, zero outside columns ``floor(c0) .. ceil(c1) - 1`` and when ``c0 == c1``."""
    cols = torch.arange(width, dtype=torch.float64, device=c0.device)
    rows = torch.arange(height, dtype=torch.float64, device=c0.device).view(height, 1)
    vertical = c1 == c0
    slope = (r1 - r0) / torch.where(vertical, 1.0, c1 - c0)
    centre = slope.unsqueeze(-1) * (cols - c0.unsqueeze(-1)) + r0.unsqueeze(-1)  # (*S, W)
    dist = (rows - centre.unsqueeze(-2)).abs_().clamp_(0.0, LINE_DECAY - 1e-10)  # (*S, H, W)
    line = torch.log(1 - dist / LINE_DECAY).add_(1.0).clamp_(0.0, 1.0)
    keep = (cols >= torch.floor(c0).unsqueeze(-1)) & (cols < torch.ceil(c1).unsqueeze(-1)) & ~vertical.unsqueeze(-1)
    return line * keep.unsqueeze(-2)


def _add_lines(x: Tensor, lines: Tensor) -> Tensor:
    """``clip(x + lines)`` with float64 masks (N, H, W) computed on the CPU for MPS."""
    return (x + lines.to(device=x.device, dtype=x.dtype).unsqueeze(1)).clamp_(0.0, 1.0)


@_mnistc("dotted_line")
def dotted_line(x: Tensor, seeds: Tensor) -> Tensor:
    """A line from column 0 to column W-1 between rows ``r0, r1 = randint(0, H-1)``, with the 2-px column segments
    0-1, 4-5, 8-9, ... removed, added to the image and clipped."""
    n, _, h, w = x.shape
    u = _uniform(seeds, 2, _STREAM_LINE)
    r0, r1 = _randint(u[:, 0], 0, h - 1), _randint(u[:, 1], 0, h - 1)
    zeros = torch.zeros_like(r0)
    lines = line_masks(zeros, r0, zeros + (w - 1), r1, h, w)
    dots = (torch.arange(w, device=lines.device) // 2) % 2 == 1
    return _add_lines(x, lines * dots)


def zigzag_endpoints(r0: Tensor, r1: Tensor, width: int = 28) -> tuple[Tensor, Tensor, Tensor]:
    """Vertices (columns, rows: float64 (N, K)) of MNIST-C's zigzag from column 2 to W-3, rows ``r0`` -> ``r1``, and
    their number (N,). In the line's frame (length ``d``): (0, 0), ``((2i + 1) a, (-1)^i b)`` for ``i <= (d - a) / 2a``,
    then unless ``d`` is a multiple of 2a the reference's end point ``(d, r_last / (2 (d - 2a floor(d / 2a))))``."""
    a, b = ZIGZAG_LENGTH, ZIGZAG_WIDTH
    c0, c1 = 2.0, float(width - 3)
    theta = torch.atan((r1 - r0) / (c1 - c0))
    d = (c1 - c0) / torch.cos(theta)
    count = torch.floor((d - a) / (2 * a)).to(torch.int64) + 1  # zig points
    k = int(count.max()) if count.numel() else 1
    i = torch.arange(k, dtype=torch.float64, device=r0.device)
    last_r = torch.where(count % 2 == 1, b, -b)  # (-1)^(count - 1) b
    max_c = 2 * a * torch.floor(d / (2 * a))
    extra = d != max_c
    end_r = last_r / (2 * torch.where(extra, d - max_c, 1.0))
    slot = torch.arange(k + 2, device=r0.device)  # vertex j: 0 = origin, 1..count = zig points, count + 1 = end
    pad = torch.zeros(1, dtype=torch.float64, device=r0.device)
    zc = torch.cat([pad, (2 * i + 1) * a, pad])
    zr = torch.cat([pad, torch.where(i % 2 == 0, b, -b), pad])
    is_end = slot.unsqueeze(0) == (count + 1).unsqueeze(1)
    pc = torch.where(is_end, d.unsqueeze(1), zc.unsqueeze(0))
    pr = torch.where(is_end, end_r.unsqueeze(1), zr.unsqueeze(0))
    vertices = count + 1 + extra.to(torch.int64)
    cos, sin = torch.cos(theta).unsqueeze(1), torch.sin(theta).unsqueeze(1)
    cs = cos * pc - sin * pr + c0
    rs = sin * pc + cos * pr + r0.unsqueeze(1)
    return cs, rs, vertices


@_mnistc("zigzag")
def zigzag(x: Tensor, seeds: Tensor) -> Tensor:
    """A zigzag (a = b = 2) from column 2 to column W-3 starting at row ``r0 = randint(0, H-1)`` and ending near row
    ``r0 + randint(-5, 5)``: the sum of its anti-aliased segments, added to the image and clipped."""
    n, _, h, w = x.shape
    u = _uniform(seeds, 2, _STREAM_LINE)
    r0 = _randint(u[:, 0], 0, h - 1)
    r1 = r0 + _randint(u[:, 1], -5, 5)
    cs, rs, vertices = zigzag_endpoints(r0, r1, w)
    segments = torch.arange(1, cs.shape[1], device=cs.device)
    valid = segments.unsqueeze(0) < vertices.unsqueeze(1)  # (N, S)
    lines = line_masks(cs[:, :-1], rs[:, :-1], cs[:, 1:], rs[:, 1:], h, w)  # (N, S, H, W)
    return _add_lines(x, (lines * valid[..., None, None]).sum(1))


# Canny edges (scikit-image ``feature.canny`` defaults)


@_mnistc("canny_edges")
def canny_edges(x: Tensor, seeds: Tensor) -> Tensor:
    """scikit-image ``feature.canny`` (sigma 1, thresholds 0.1 / 0.2) of each channel as a 0/1 image, in float64.

    Gaussian smoothing with zero padding divided by the smoothed all-ones image (+ eps), Sobel gradients ('reflect'),
    scikit-image's bilinear non-maximum suppression (border excluded, low threshold as a C float), hysteresis over
    8-connected candidates; in scipy / scikit-image's arithmetic order, so maps agree except at exact ties.
    """
    n, c, h, w = x.shape
    planes = x.to(device=rng._compute_device(x.device), dtype=torch.float64).reshape(n * c, 1, h, w)

    def smooth(v: Tensor) -> Tensor:
        return _gaussian1d(_gaussian1d(v, CANNY_SIGMA, -2, "constant"), CANNY_SIGMA, -1, "constant")

    bleed = smooth(torch.ones_like(planes[:1])) + float(np.finfo(np.float64).eps)
    p = F.pad(smooth(planes) / bleed, (1, 1, 1, 1), mode="replicate")  # scipy 'reflect' repeats the edge pixel

    def at(dr: int, dc: int, v: Tensor = p) -> Tensor:
        return v[..., 1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]

    di = at(1, -1) - at(-1, -1), at(1, 0) - at(-1, 0), at(1, 1) - at(-1, 1)  # d/drow at columns -1, 0, +1
    isobel = di[1] * 2.0 + (di[0] + di[2])
    dj = at(-1, 1) - at(-1, -1), at(0, 1) - at(0, -1), at(1, 1) - at(1, -1)  # d/dcol at rows -1, 0, +1
    jsobel = dj[1] * 2.0 + (dj[0] + dj[2])
    mag = torch.sqrt(isobel * isobel + jsobel * jsobel)
    m = F.pad(mag, (1, 1, 1, 1))
    ai, aj = isobel.abs(), jsobel.abs()
    same = (isobel > 0) == (jsobel > 0)  # (up and right) or (down and left); the rest has opposite signs
    # Four classes: same signs with |gi| > |gj| ("steep") or not; opposite signs with |gi| < |gj| ("flat") or not.
    # Each compares the magnitude with two neighbours interpolated (weight w) between a straight and a diagonal
    # neighbour, on the plus and on the minus side; w's division by zero only happens where the class is not used.
    w_ji = aj / ai
    w_ij = ai / aj

    def test(weight: Tensor, p1: Tensor, p2: Tensor, q1: Tensor, q2: Tensor) -> Tensor:
        return ((p2 * weight + p1 * (1.0 - weight)) <= mag) & ((q2 * weight + q1 * (1.0 - weight)) <= mag)

    same_steep = test(w_ji, at(1, 0, m), at(1, 1, m), at(-1, 0, m), at(-1, -1, m))
    same_flat = test(w_ij, at(0, 1, m), at(1, 1, m), at(0, -1, m), at(-1, -1, m))
    opp_flat = test(w_ij, at(0, 1, m), at(-1, 1, m), at(0, -1, m), at(1, -1, m))
    opp_steep = test(w_ji, at(-1, 0, m), at(-1, 1, m), at(1, 0, m), at(1, -1, m))
    maxima = torch.where(same, torch.where(ai > aj, same_steep, same_flat), torch.where(ai < aj, opp_flat, opp_steep))
    low = F.pad((maxima & (mag >= CANNY_LOW))[..., 1:-1, 1:-1].to(torch.float32), (1, 1, 1, 1))  # border excluded
    grown = low * (mag >= CANNY_HIGH)
    # hysteresis: grow the strong pixels through 8-connected candidates
    while not torch.equal(nxt := F.max_pool2d(grown, 3, stride=1, padding=1).mul_(low), grown):
        grown = nxt
    return grown.view(n, c, h, w).to(device=x.device, dtype=x.dtype)
