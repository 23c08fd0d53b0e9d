"""Weather corruptions of ImageNet-C (Hendrycks & Dietterich 2019): snow, frost, fog, brightness and spatter.

Batched ports of ``make_imagenet_c.py`` / ``make_cifar_c.py`` / ``make_tinyimagenet_c.py`` (``hendrycks/robustness``).
The helpers that take the random fields as arguments (``_plasma_fractal``, ``_snow_layer``, ``_frost_crops``,
``_spatter_from_field``, ...) let the tests feed them the reference's draws. Where the original scripts and
``imagecorruptions`` differ these follow the original (``docs/parity/weather.md``): frost crops the five textures
(CIFAR / Tiny-ImageNet: resized by 0.2 / 0.3 first), snow quantises its layer to 8 bits before the motion blur
(ImageMagick's PNG) and trims the zoomed layer centrally, fog builds its plasma in the working precision.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from robustnoise.corruptions import rng, textures
from robustnoise.corruptions.api_types import prepare_images
from robustnoise.corruptions.blur import motion_blur_angles
from robustnoise.corruptions.filters import gaussian_filter, map_image_chunks
from robustnoise.corruptions.registry import register
from robustnoise.utils.errors import RobustnoiseError

__all__ = ["brightness", "fog", "frost", "snow", "spatter"]

# Water spatter: the chamfer distance runs row by row over whole chunks of _WATER_BATCH_ELEMENTS values (many images:
# fewer, longer ops); its other steps run on chunks of _WATER_CHUNK_ELEMENTS values per plane (about 2 images).
_WATER_BATCH_ELEMENTS = 1 << 24
_WATER_CHUNK_ELEMENTS = 1 << 17

# Random streams; the seeds are already specific to the corruption and the severity.
_STREAM_SNOW_LAYER = 0
_STREAM_SNOW_ANGLE = 1
_STREAM_FROST = 0
_STREAM_FOG = 0
_STREAM_SPATTER = 0

_LUMA = (0.299, 0.587, 0.114)  # cv2.COLOR_RGB2GRAY (snow); also the grayscale weights of frost and spatter
_WATER_RGB = (175.0, 238.0, 238.0)  # added in array channel order (R gets 175), as the reference does
_MUD_RGB = (63.0, 42.0, 20.0)
_WIBBLE = 100.0  # initial plasma noise amplitude


# shared helpers


def _gray(x: Tensor) -> Tensor:
    """(N, 1, H, W) luma of RGB images; the channel mean for other channel counts (the image itself for C = 1)."""
    if x.shape[1] == 3:
        return x[:, 0:1] * _LUMA[0] + x[:, 1:2] * _LUMA[1] + x[:, 2:3] * _LUMA[2]
    return x.mean(dim=1, keepdim=True)


def _colour(rgb: tuple[float, float, float], channels: int, x: Tensor) -> Tensor:
    """(1, C, 1, 1) colour in [0, 1]: RGB for 3 channels, its luma for 1 channel (spatter checks the channels)."""
    values = [v / 255.0 for v in rgb] if channels == 3 else [sum(w * v for w, v in zip(_LUMA, rgb)) / 255.0]
    return torch.tensor(values, dtype=x.dtype, device=x.device).view(1, channels, 1, 1)


def _zero_below(x: Tensor, threshold: float) -> Tensor:
    """``x * (x >= threshold)``, the comparison written as floats (a bool mask costs a conversion pass more)."""
    return torch.ge(x, threshold, out=torch.empty_like(x)).mul_(x)


def _gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """skimage ``gaussian(sigma)`` (truncate 4, 'nearest' border); dense filter matrices up to 64 px (faster there)."""
    return gaussian_filter(x, float(sigma), method="dense" if max(x.shape[-2:]) <= 64 else "auto")


# brightness


def _brightness_scale(x: Tensor, shift: float) -> Tensor:
    """``rgb * V' / V``: HSV -> RGB is linear in V at fixed hue and saturation. Computed as ``V' + (rgb - V) V' / V``,
    so the maximum channel is ``V'`` exactly and black pixels (V = 0: hue = saturation = 0) become gray ``V' = c``."""
    value = x.amax(dim=1, keepdim=True)
    new_value = (value + shift).clamp_(0.0, 1.0)
    ratio = torch.div(new_value, value.clamp_min(torch.finfo(x.dtype).tiny))
    centred = x - value
    return torch.addcmul(new_value, centred, ratio, out=centred).clamp_(0.0, 1.0)  # in place: 2x faster here


@register("brightness", "weather")
def brightness(images: Tensor, severity_param: float, seeds: Tensor) -> Tensor:
    """HSV value shift ``V <- clip(V + c)`` (ImageNet-C ``brightness``), computed as ``rgb * V' / V``: the reference's
    HSV round trip up to float rounding. Other channel counts than 3: ``clip(x + c)`` (a gray pixel's value)."""
    x, seeds = prepare_images(images, seeds)
    shift = float(severity_param)
    if x.shape[1] != 3:
        return (x + shift).clamp_(0.0, 1.0).to(images.dtype)
    return map_image_chunks(lambda part: _brightness_scale(part, shift), x).to(images.dtype)


# fog


def _plasma_map_size(height: int, width: int) -> int:
    """Next power of two >= max(H, W): 256 for ImageNet (224), 32 for CIFAR, 64 for Tiny-ImageNet."""
    return max(2, 1 << (max(height, width) - 1).bit_length())


def _plasma_fractal(uniforms: Tensor, mapsize: int, wibble_decay: float, dtype: torch.dtype) -> Tensor:
    """Diamond-square plasma (N, M, M) in [0, 1] from ``mapsize**2 - 1`` uniforms in [0, 1) per map.

    The reference ``plasma_fractal`` vectorised over the batch: per level, square centres, then the two diamond grids
    get the mean of their 4 (wrapped) neighbours plus ``wibble * U(-wibble, wibble)`` (``wibble`` divided by the decay
    per level); then min-max normalised. Uniforms are consumed in the reference's order (squares, corner-row
    diamonds, centre-row diamonds; row-major), so numpy's ``random_sample`` stream reproduces its draws exactly.
    """
    n = uniforms.shape[0]
    if uniforms.shape[1] != mapsize * mapsize - 1:
        raise ValueError(f"need {mapsize * mapsize - 1} uniforms per map, got {uniforms.shape[1]}")
    used, wibble = 0, _WIBBLE

    def wibbled_mean(total: Tensor) -> Tensor:
        nonlocal used
        count = total.shape[1] * total.shape[2]
        # np.random.uniform(-w, w) = -w + (w - (-w)) * random_sample() in float64, times w (scalars: faster)
        noise = uniforms[:, used : used + count].view(total.shape).to(torch.float64).mul(2.0 * wibble)
        used += count
        return noise.sub_(wibble).mul_(wibble).add_(total, alpha=0.25).to(dtype)  # x / 4 == x * 0.25, in float64

    # grid: the points `step` apart (k x k of them), starting with the single corner 0. Each level computes the
    # square centres and the two diamond grids from it and interleaves the four grids into the next (2k x 2k) grid.
    grid = torch.zeros(n, 1, 1, dtype=dtype, device=uniforms.device)
    while grid.shape[1] < mapsize:
        k = grid.shape[1]
        total = grid + grid.roll(-1, 1)
        centres = wibbled_mean(total + total.roll(-1, 2))
        row_diamonds = wibbled_mean((centres + centres.roll(1, 1)) + (grid + grid.roll(-1, 2)))  # rows of corners
        col_diamonds = wibbled_mean((centres + centres.roll(1, 2)) + total)  # rows of centres
        interleaved = torch.empty(n, k, 2, k, 2, dtype=dtype, device=uniforms.device)  # faster than torch.stack
        interleaved[:, :, 0, :, 0] = grid
        interleaved[:, :, 0, :, 1] = row_diamonds
        interleaved[:, :, 1, :, 0] = col_diamonds
        interleaved[:, :, 1, :, 1] = centres
        grid = interleaved.view(n, 2 * k, 2 * k)
        wibble /= float(wibble_decay)
    grid -= grid.amin(dim=(1, 2), keepdim=True)
    return grid.div_(grid.amax(dim=(1, 2), keepdim=True).clamp_min(torch.finfo(dtype).tiny))


def _fog_from_plasma(x: Tensor, strength: float, plasma: Tensor) -> Tensor:
    """``clip((x + s * plasma) * M / (M + s))`` with M the maximum of each original image over all channels."""
    height, width = x.shape[-2:]
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    fogged = torch.add(x, plasma[:, None, :height, :width].mul_(strength).to(x.dtype))
    return fogged.mul_(peak).div_(peak + strength).clamp_(0.0, 1.0)


@register("fog", "weather")
def fog(images: Tensor, severity_param: tuple[float, float], seeds: Tensor) -> Tensor:
    """Fog: a diamond-square plasma fractal added to every channel, then rescaled (ImageNet-C ``fog``). The map is the
    next power of two >= max(H, W) (as the reference scripts), cropped at the top left; any channel count."""
    x, seeds = prepare_images(images, seeds)
    strength, decay = float(severity_param[0]), float(severity_param[1])
    mapsize = _plasma_map_size(*x.shape[-2:])

    def run(part: Tensor, part_seeds: Tensor) -> Tensor:
        u = rng.uniform(part_seeds, (mapsize * mapsize - 1,), stream=_STREAM_FOG, dtype=torch.float64)
        return _fog_from_plasma(part, strength, _plasma_fractal(u, mapsize, decay, x.dtype))

    return map_image_chunks(run, x, seeds).to(images.dtype)


# frost


def default_frost_texture_scale(height: int, width: int) -> float:
    """The reference scripts' texture scale: 0.2 up to 32 px (CIFAR-10-C), 0.3 up to 64 px (Tiny-ImageNet-C), else 1."""
    side = max(height, width)
    return 0.2 if side <= 32 else 0.3 if side <= 64 else 1.0


def _fit_texture(texture: Tensor, height: int, width: int) -> Tensor:
    """Upscale a texture that is not strictly larger than the image (only for images beyond the reference sizes)."""
    tex_h, tex_w = texture.shape[-2:]
    if tex_h > height and tex_w > width:
        return texture
    factor = max((height + 1) / tex_h, (width + 1) / tex_w)
    return textures.resize_bilinear_like_cv2(texture.cpu(), factor).to(texture.device)


def _frost_draws(seeds: Tensor, sizes: Tensor, height: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """Texture index (``randint(5)``) and crop corner (``randint(0, size - image)`` per axis) of every image."""
    u = rng.uniform(seeds, (3,), stream=_STREAM_FROST, dtype=torch.float64)
    index = (u[:, 0] * len(sizes)).floor_().long().clamp_(max=len(sizes) - 1)
    chosen = sizes.to(u.device)[index].to(torch.float64)
    top = (u[:, 1] * (chosen[:, 0] - height)).floor_().long()
    left = (u[:, 2] * (chosen[:, 1] - width)).floor_().long()
    return index, top, left


def _frost_crops(
    texture_list: tuple[Tensor, ...], index: Tensor, top: Tensor, left: Tensor, height: int, width: int
) -> Tensor:
    """(N, 3, H, W) uint8 crops ``texture_list[index][:, top:top + H, left:left + W]`` (a copy per image: 20-40x
    faster on the CPU than a gather with computed indices)."""
    out = torch.empty(len(index), 3, height, width, dtype=torch.uint8, device=texture_list[0].device)
    for i, (k, y, x) in enumerate(zip(index.tolist(), top.tolist(), left.tolist())):
        out[i] = texture_list[k][:, y : y + height, x : x + width]
    return out


def _frost_blend(x: Tensor, severity_param: tuple[float, float], crops: Tensor) -> Tensor:
    """``clip(a x + b frost)`` with the frost crops (N, 3, H, W) in 0..255 (grayscale images: their luma)."""
    image_weight, frost_weight = float(severity_param[0]), float(severity_param[1])
    frost_layer = crops.to(device=x.device, dtype=x.dtype)
    if x.shape[1] == 1:
        frost_layer = _gray(frost_layer)
    return (x * image_weight).add_(frost_layer, alpha=frost_weight / 255.0).clamp_(0.0, 1.0)


@register("frost", "weather")
def frost(
    images: Tensor,
    severity_param: tuple[float, float],
    seeds: Tensor,
    *,
    texture_scale: float | None = None,
    frost_dir: str | os.PathLike[str] | None = None,
) -> Tensor:
    """Frost: ``clip(a x + b crop)`` with a uniformly random crop of one of the first five frost textures (ImageNet-C
    ``frost``), resized first by ``texture_scale`` (default :func:`default_frost_texture_scale`). Grayscale images
    use the crop's luma.

    Raises:
        RobustnoiseError: the textures are missing (:mod:`robustnoise.corruptions.textures`), or the images have
            neither 1 nor 3 channels.
    """
    x, seeds = prepare_images(images, seeds)
    n, channels, height, width = x.shape
    if channels not in (1, 3):
        raise RobustnoiseError(f"frost needs 1 or 3 channels, got {channels}")
    scale = default_frost_texture_scale(height, width) if texture_scale is None else float(texture_scale)
    texture_list = textures.frost_textures(x.device, scale, frost_dir)
    texture_list = tuple(_fit_texture(t, height, width) for t in texture_list)
    sizes = torch.tensor([t.shape[1:] for t in texture_list], dtype=torch.int64)
    index, top, left = _frost_draws(seeds, sizes, height, width)

    def run(part: Tensor, *draws: Tensor) -> Tensor:
        return _frost_blend(part, severity_param, _frost_crops(texture_list, *draws, height, width))

    return map_image_chunks(run, x, index, top, left).to(images.dtype)


# snow


def _zoom_crop(size: int, zoom: float) -> tuple[int, int]:
    """(start, length) of the centred crop that ``clipped_zoom`` magnifies: length ``ceil(size / zoom)``."""
    length = math.ceil(size / float(zoom))
    return (size - length) // 2, length


def _clipped_zoom(layer: Tensor, zoom: float, height: int, width: int) -> Tensor:
    """scipy ``zoom(order=1)`` of the crop (N, 1, ch, cw) to ``round(ch * zoom)`` (corner-aligned bilinear), then
    the centred H x W trim of the original ``clipped_zoom``."""
    crop_h, crop_w = layer.shape[-2:]
    out_h, out_w = int(round(crop_h * float(zoom))), int(round(crop_w * float(zoom)))
    if (out_h, out_w) != (crop_h, crop_w):
        layer = F.interpolate(layer, size=(out_h, out_w), mode="bilinear", align_corners=True)
    top, left = (out_h - height) // 2, (out_w - width) // 2
    return layer[..., top : top + height, left : left + width]


def _snow_layer(
    field: Tensor,
    height: int,
    width: int,
    severity_param: tuple[float, ...],
    angles: Tensor,
    quantize_before_blur: bool = True,
) -> Tensor:
    """The snow layer (N, 1, H, W) in multiples of 1/255 from the normal field of the zoomed crop.

    ``field``: (N, ch, cw) draws of N(loc, scale) for the centred ``ceil(H / zoom) x ceil(W / zoom)`` crop (the
    reference draws a full H x W field but only this crop reaches the output). Zoom, zero below the threshold, clip,
    8-bit truncation (the original's PNG; ``quantize_before_blur=False`` skips it as ``imagecorruptions`` does),
    motion blur, rounding to 8 bits.
    """
    _, _, zoom, threshold, blur_radius, blur_sigma, _ = (float(v) for v in severity_param)
    layer = _clipped_zoom(field[:, None], zoom, height, width)
    layer = _zero_below(layer, threshold)
    layer = layer.clamp(0.0, 1.0).mul_(255.0)
    if quantize_before_blur:
        layer = layer.floor_()
    blurred = motion_blur_angles(layer, blur_radius, blur_sigma, angles, stop_at_edge=False)  # ImageMagick
    return blurred.round_().div_(255.0)


def _snow_blend(x: Tensor, layer: Tensor, blend: float) -> Tensor:
    """``x <- b x + (1 - b) max(x, 1.5 gray + 0.5)``, then ``clip(x + snow + rot180(snow))``."""
    brightened = torch.maximum(x, _gray(x).mul_(1.5).add_(0.5))
    layer = layer.to(x.dtype)
    return brightened.lerp_(x, blend).add_(layer + layer.flip(-2, -1)).clamp_(0.0, 1.0)


@register("snow", "weather")
def snow(images: Tensor, severity_param: tuple[float, ...], seeds: Tensor) -> Tensor:
    """Snow (ImageNet-C ``snow``): a thresholded, zoomed, motion-blurred N(loc, scale) layer (angle U(-135, -45)
    degrees per image) added twice (as is and rotated by 180 degrees) to the brightened image (grayscale: by itself).
    """
    x, seeds = prepare_images(images, seeds)
    loc, scale, zoom = float(severity_param[0]), float(severity_param[1]), float(severity_param[2])
    blend = float(severity_param[6])
    height, width = x.shape[-2:]
    crop_h, crop_w = _zoom_crop(height, zoom)[1], _zoom_crop(width, zoom)[1]

    def run(part: Tensor, part_seeds: Tensor) -> Tensor:
        field = rng.normal(part_seeds, (crop_h, crop_w), stream=_STREAM_SNOW_LAYER, dtype=x.dtype).mul_(scale)
        angles = rng.uniform(part_seeds, (1,), stream=_STREAM_SNOW_ANGLE, dtype=torch.float64)[:, 0] * 90.0 - 135.0
        return _snow_blend(part, _snow_layer(field.add_(loc), height, width, severity_param, angles), blend)

    return map_image_chunks(run, x, seeds).to(images.dtype)


# spatter


def _sobel(image: Tensor) -> tuple[Tensor, Tensor]:
    """3x3 Sobel derivatives (x, y) of (N, 1, H, W) planes with replicated borders, as ``cv2.Sobel`` in ``Canny``
    (integer values: exact in any order)."""
    p = F.pad(image, (1, 1, 1, 1), mode="replicate")
    h, w = image.shape[-2:]
    rows = (p[..., 0:h, :] + p[..., 2 : h + 2, :]).add_(p[..., 1 : h + 1, :], alpha=2.0)  # smoothed across rows
    cols = (p[..., 0:w] + p[..., 2 : w + 2]).add_(p[..., 1 : w + 1], alpha=2.0)  # smoothed across columns
    return rows[..., 2 : w + 2] - rows[..., 0:w], cols[..., 2 : h + 2, :] - cols[..., 0:h, :]


def _canny(image: Tensor, low: float = 50.0, high: float = 150.0) -> Tensor:
    """``cv2.Canny(image, low, high)`` (aperture 3, L1 gradient) of (N, 1, H, W) planes with integer values 0..255.

    Non-maximum suppression in OpenCV's integer sectors (tan 22.5 deg = 13573 / 2**15; ties broken as OpenCV does),
    magnitudes outside the image count as 0, then hysteresis: weak candidates (> low) connected (8-neighbourhood) to
    strong ones (> high). Returns a bool edge mask.
    """
    dx, dy = _sobel(image)
    ax, ay = dx.abs(), dy.abs()
    mag = ax + ay
    height, width = image.shape[-2:]
    padded = F.pad(mag, (1, 1, 1, 1))  # zeros outside the image

    def at(dr: int, dc: int) -> Tensor:
        return padded[..., 1 + dr : 1 + dr + height, 1 + dc : 1 + dc + width]

    # OpenCV's integer sector tests, exact in float32 (all products are integers below 2**24 or multiples of 2**15):
    # horizontal: |dy| 2**15 < |dx| tan22, vertical: |dy| 2**15 > |dx| (tan22 + 2**16), tan22 = 13573. Masks and
    # tests "a > b" below are (a - b).clamp_(0, 1): 1.0 where an integer-valued difference is > 0, else 0.0.
    tan22 = ax * 13573.0
    horizontal = (tan22 - ay * 32768.0).clamp_(0.0, 1.0)
    vertical = torch.sub(ay, ax, alpha=2.0).mul_(32768.0).sub_(tan22).clamp_(0.0, 1.0)
    opposite = (dx * dy).neg_().clamp_(0.0, 1.0)  # diagonal sector: dx, dy both 0 or both nonzero; |dx dy| < 2**21
    # A pixel is kept if its magnitude exceeds the larger of its two neighbours along the gradient sector (integers:
    # the right / lower neighbour, which it only needs to equal, counts one less); the sectors pick the neighbours.
    neighbours = torch.lerp(torch.maximum(at(-1, -1), at(1, 1)), torch.maximum(at(-1, 1), at(1, -1)), opposite)
    neighbours = neighbours.lerp_(torch.maximum(at(-1, 0), at(1, 0) - 1.0), vertical)
    neighbours = neighbours.lerp_(torch.maximum(at(0, -1), at(0, 1) - 1.0), horizontal)
    weak = (mag - neighbours.clamp_min(low)).clamp_(0.0, 1.0).bool()
    edges = (mag - neighbours.clamp_min_(high)).clamp_(0.0, 1.0).bool()
    while True:  # hysteresis: grow the strong edges into 8-connected weak candidates (a few rounds in practice)
        padded_edges = F.pad(edges, (1, 1, 1, 1))  # the 3x3 dilation, separably: along rows, then along columns
        across = padded_edges[..., 0:width] | padded_edges[..., 1 : width + 1]
        across |= padded_edges[..., 2 : width + 2]
        grown = across[..., 0:height, :] | across[..., 1 : height + 1, :]
        grown |= across[..., 2 : height + 2, :]
        grown &= weak
        if torch.equal(grown, edges):
            return edges
        edges = grown


_CHAMFER_STEPS = (1.0, 1.4, 2.1969)  # OpenCV's 5x5 DIST_L2 mask: axial, diagonal and knight moves (float32)


def _chamfer_pass(dist: Tensor, free: Tensor | None, ramp: Tensor, first: Tensor | None = None) -> None:
    """One raster pass of the 5x5 chamfer distance over the padded float32 buffer ``dist`` (N, H + 2, W + 4), rows
    2.. top to bottom, columns 2.. left to right; ``free`` (N, H, W): 0 on zero pixels, 1 elsewhere; ``first``: the
    result of the previous pass (N, H, W), folded in by a minimum."""
    axial, diagonal, knight = (float(np.float32(step)) for step in _CHAMFER_STEPS)
    height, width = dist.shape[1] - 2, dist.shape[2] - 4
    at = [dist[:, :, k : k + width].unbind(1) for k in range(5)]  # at[k][i]: buffer row i from column k
    # min(a + k, b + k) == min(a, b) + k exactly (rounding is monotone), so equal steps share one addition; the
    # minimum of a row's columns j - 1 and j + 1 serves the next row (diagonal) and the one after (knight).
    pair_two_above = torch.minimum(at[1][0], at[3][0])
    for r in range(height):
        pair_above = torch.minimum(at[1][r + 1], at[3][r + 1])
        best = torch.minimum(pair_two_above, torch.minimum(at[0][r + 1], at[4][r + 1])).add_(knight)
        best = torch.minimum(best, pair_above + diagonal)
        best = torch.minimum(best, at[2][r + 1] + axial)
        pair_two_above = pair_above
        if free is not None:
            best.mul_(free[:, r])
        if first is not None:
            best = torch.minimum(best, first[:, r])
        # out[j] = min(best[j], out[j - 1] + axial) = ramp + cummin(best - ramp), exact in float64, rounded once
        torch.add(torch.cummin(torch.sub(best, ramp), dim=-1).values, ramp, out=at[2][r + 2])


def _chamfer_distance(zeros: Tensor, limit: float = 20.0) -> Tensor:
    """``min(cv2.distanceTransform(src, DIST_L2, 5), limit)`` where ``zeros`` (bool, N, 1, H, W) marks src == 0.

    OpenCV's 5x5 chamfer distance as OpenCV computes it: a forward raster pass and a backward one, run as the same
    forward pass on the image rotated by 180 degrees (the mask is point-symmetric). Rows are processed one at a time
    for the whole batch; the left neighbour within a row is a running minimum (``cummin``). Pixels outside the image
    are infinitely far; as values are truncated at ``limit``, "infinity" is any value above it.
    """
    axial = float(np.float32(_CHAMFER_STEPS[0]))
    n, _, height, width = zeros.shape
    far = float(limit) + 8.0
    free = (~zeros[:, 0]).to(torch.float32)  # 0 on zero pixels, 1 elsewhere
    ramp = torch.arange(width, dtype=torch.float64, device=zeros.device) * axial
    # Row r of the image is row r + 2 of the buffers; columns are padded by 2 on both sides.
    dist = torch.full((n, height + 2, width + 4), far, dtype=torch.float32, device=zeros.device)
    _chamfer_pass(dist, free, ramp)
    first = dist[:, 2:, 2 : width + 2].flip(-2, -1)
    _chamfer_pass(dist.fill_(far), None, ramp, first=first)  # the backward pass reuses the buffer (no fresh pages)
    return dist[:, None, 2:, 2 : width + 2].flip(-2, -1).clamp_(max=float(limit))


def _box3(image: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    """3x3 box sum with reflect-101 borders (``cv2.blur``'s default border), in ``dtype``."""
    padded = F.pad(image.to(dtype), (1, 1, 1, 1), mode="reflect")
    height, width = image.shape[-2:]
    rows = (padded[..., 0:height, :] + padded[..., 1 : height + 1, :]).add_(padded[..., 2 : height + 2, :])
    return (rows[..., 0:width] + rows[..., 1 : width + 1]).add_(rows[..., 2 : width + 2])


def _equalize_hist(image: Tensor) -> Tensor:
    """``cv2.equalizeHist`` of each (1, H, W) plane of integer values 0..255 (float in, float out)."""
    n, total = image.shape[0], math.prod(image.shape[1:])
    bins = torch.arange(0, 256 * n, 256, dtype=torch.int32, device=image.device).view(n, 1)  # plane k: bins 256 k..
    flat = image.reshape(n, total).int().add_(bins).view(-1)  # one bincount and one index_select for all planes
    hist = torch.bincount(flat, minlength=256 * n).view(n, 256)
    first = (hist > 0).long().argmax(dim=1, keepdim=True)  # lowest present value
    first_count = hist.gather(1, first)
    cumulative = hist.cumsum(1) - first_count  # sum of the counts of the bins in (first, j]
    scale = torch.full((n, 1), 255.0, dtype=torch.float32, device=image.device)
    scale = scale / (total - first_count).clamp_min(1).to(torch.float32)
    lut = torch.round(cumulative.to(torch.float32) * scale).clamp_(0, 255)  # saturate_cast: round half to even
    lut = torch.where(first_count == total, first.to(torch.float32), lut)  # a constant plane stays as it is
    return lut.view(-1).index_select(0, flat).view_as(image).to(image.dtype)


def _water_shape(distance: Tensor) -> Tensor:
    """The reference's 'dist' map of the water spatter from the truncated chamfer distance (N, 1, H, W): 3x3 blur
    to 8 bits, histogram equalisation, the emboss filter ``[[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]`` (``cv2.filter2D``
    to 8 bits: correlation, reflect-101 border, saturation) and a rounded 3x3 blur. Float in, float out."""
    dist = _box3(distance).mul_(1.0 / 9.0).to(torch.float32).floor_()  # cv2.blur (float) -> astype(uint8)
    dist = _equalize_hist(dist)
    padded = F.pad(dist, (1, 1, 1, 1), mode="reflect")
    height, width = dist.shape[-2:]

    def at(r: int, c: int) -> Tensor:
        return padded[..., r : r + height, c : c + width]

    emboss = (at(1, 1) + at(1, 2)).add_(at(2, 1)).sub_(at(0, 1)).sub_(at(1, 0)).add_(at(2, 2) - at(0, 0), alpha=2.0)
    # cv2.blur of uint8: rounded mean. Sums of 9 integers are exact in float32, and s / 9 is never within 1/18 of a
    # half, so float32 rounds as exactly as float64 here.
    return _box3(emboss.clamp_(0.0, 255.0), torch.float32).div_(9.0).round_()


def _liquid(field: Tensor, sigma: float, threshold: float, dtype: torch.dtype) -> Tensor:
    """``gaussian(field, sigma)`` with values below the threshold set to 0, as (N, 1, H, W)."""
    liquid = _gaussian_blur(field[:, None].to(dtype), sigma)
    return _zero_below(liquid, threshold)


def _spatter_from_field(x: Tensor, severity_param: tuple[float, ...], field: Tensor) -> Tensor:
    """Spatter from the N(loc, scale) field (N, H, W): gaussian blur, threshold, then water (mode 0) or mud (mode 1).

    Water: Canny edges of the 8-bit liquid layer, their chamfer distance, the shaping filters, then
    ``x + k m (175, 238, 238) / 255`` with ``m = liquid * dist`` normalised to a maximum of 1 per image.
    Mud: ``m = gaussian(liquid > thr, k)`` zeroed below 0.8, then ``x (1 - m) + m (63, 42, 20) / 255``.
    """
    _, _, sigma, threshold, intensity, mode = (float(v) for v in severity_param)
    if int(mode) != 0:
        liquid = _liquid(field, sigma, threshold, x.dtype)
        m = _zero_below(_gaussian_blur(torch.gt(liquid, threshold, out=torch.empty_like(liquid)), intensity), 0.8)
        return torch.lerp(x, _colour(_MUD_RGB, x.shape[1], x), m).clamp_(0.0, 1.0)  # x (1 - m) + m colour

    def liquid8_and_edges(part_field: Tensor, part8: Tensor) -> Tensor:  # the 8-bit layer into part8, its edges out
        liquid = _liquid(part_field, sigma, threshold, x.dtype).mul_(255.0)
        return _canny(torch.floor(liquid, out=part8).remainder_(256.0))  # numpy's astype(np.uint8): truncate, wrap

    # Only the chamfer distance (a loop over rows) needs the whole batch; the other steps run on cache-sized chunks.
    liquid8 = torch.empty(field.shape[0], 1, *field.shape[1:], dtype=x.dtype, device=x.device)
    edges = map_image_chunks(liquid8_and_edges, field, liquid8, max_elements=_WATER_CHUNK_ELEMENTS)
    distance = _chamfer_distance(edges)
    colour = _colour(_WATER_RGB, x.shape[1], x)

    def blend(part: Tensor, part8: Tensor, part_distance: Tensor) -> Tensor:
        m = _water_shape(part_distance).to(part8.dtype).mul_(part8)
        peak = m.amax(dim=(1, 2, 3), keepdim=True).clamp_min(torch.finfo(m.dtype).tiny)  # all dry: unchanged
        return torch.addcmul(part, m.div_(peak).mul_(intensity), colour).clamp_(0.0, 1.0)

    return map_image_chunks(blend, x, liquid8, distance, max_elements=3 * _WATER_CHUNK_ELEMENTS)


@register("spatter", "weather")
def spatter(images: Tensor, severity_param: tuple[float, ...], seeds: Tensor) -> Tensor:
    """Spatter (ImageNet-C holdout ``spatter``): water drops (mode 0: Canny edges, chamfer distance, histogram
    equalisation and an emboss filter shape turquoise highlights) or mud (mode 1: brown blotches). Grayscale images
    get the luma of the colour."""
    x, seeds = prepare_images(images, seeds)
    if x.shape[1] not in (1, 3):
        raise RobustnoiseError(f"spatter needs 1 or 3 channels, got {x.shape[1]}")
    loc, scale = float(severity_param[0]), float(severity_param[1])
    height, width = x.shape[-2:]

    def run(part: Tensor, part_seeds: Tensor) -> Tensor:
        field = rng.normal(part_seeds, (height, width), stream=_STREAM_SPATTER, dtype=part.dtype)
        return _spatter_from_field(part, severity_param, field.mul_(scale).add_(loc))

    chunk = _WATER_BATCH_ELEMENTS if int(severity_param[5]) == 0 else 1 << 19
    return map_image_chunks(run, x, seeds, max_elements=chunk).to(images.dtype)
