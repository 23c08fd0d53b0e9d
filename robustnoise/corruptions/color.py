"""Batched RGB <-> HSV conversions that reproduce scikit-image's ``rgb2hsv`` / ``hsv2rgb`` (used by ImageNet-C).

Both work on float tensors (N, 3, H, W) with values in [0, 1], on any device, and follow scikit-image's arithmetic
operation by operation, so float64 inputs give the same values as scikit-image up to the last bit in almost all
pixels. Conventions kept from scikit-image: hue in [0, 1) (1.0 can appear from the modulo of a tiny negative value),
hue and saturation 0 for gray pixels, and when several channels share the maximum, blue wins over green over red for
the hue formula.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from robustnoise.corruptions.filters import image_chunks

__all__ = ["hsv_to_rgb", "rgb_to_hsv"]


_CHUNK_PIXELS = 1 << 17
"""Pixels per chunk on the CPU: small temporaries stay in cache and are recycled by the allocator."""


def _check(x: Tensor, name: str) -> None:
    if x.dim() != 4 or x.shape[1] != 3 or not x.dtype.is_floating_point:
        raise ValueError(f"{name} expects a float tensor (N, 3, H, W), got {x.dtype} {tuple(x.shape)}")


def _chunked(fn: Callable[[Tensor, Tensor], None], x: Tensor) -> Tensor:
    """Apply ``fn(chunk, out_chunk)`` to groups of whole images (all at once on accelerators)."""
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    for part in image_chunks(x.shape[0], x.shape[2] * x.shape[3], x.device, _CHUNK_PIXELS):
        fn(x[part], out[part])
    return out


def _rgb_to_hsv_into(x: Tensor, out: Tensor) -> None:
    r, g, b = x.unbind(1)
    h, s, v = out.unbind(1)
    torch.maximum(torch.maximum(r, g, out=s), b, out=v)
    delta = torch.minimum(torch.minimum(r, g, out=h), b, out=h).neg_().add_(v)  # v - min, exact
    gray = (delta == 0).to(x.dtype)
    torch.div(delta, v.clamp_min(torch.finfo(x.dtype).tiny), out=s)  # 0 where gray (v = 0 included)
    # Hue: the later assignment wins in scikit-image, so blue-max beats green-max beats red-max. One-hot weights
    # select the formula exactly (products with 0 / 1 and sums with 0 are exact; torch.where is slow on the CPU).
    blue = (b == v).to(x.dtype)
    green = (g == v).to(x.dtype).mul_(1 - blue)
    red = 1 - blue - green
    hue = (g - b).mul_(red).add_((b - r).mul_(green)).add_((r - g).mul_(blue))
    hue.div_(delta.add_(gray)).add_(green.mul_(2.0).add_(blue.mul_(4.0))).div_(6.0)  # gray: 0 / 1
    # numpy's float modulo 1: only the red-max branch can be negative, and then lies in [-1/6, 0).
    hue.add_((hue < 0).to(x.dtype))
    torch.mul(hue, gray.neg_().add_(1), out=h)


def rgb_to_hsv(x: Tensor) -> Tensor:
    """RGB (N, 3, H, W) in [0, 1] -> HSV (N, 3, H, W), each channel in [0, 1], as ``skimage.color.rgb2hsv``."""
    _check(x, "rgb_to_hsv")
    return _chunked(_rgb_to_hsv_into, x)


def _hsv_to_rgb_into(x: Tensor, out: Tensor) -> None:
    h, s, v = x.unbind(1)
    h6 = h * 6
    hi = torch.floor(h6)
    f = h6.sub_(hi)
    p = (1 - s).mul_(v)
    q = (f * s).neg_().add_(1).mul_(v)
    t = f.neg_().add_(1).mul_(s).neg_().add_(1).mul_(v)  # v (1 - (1 - f) s); f is consumed
    sextant = torch.remainder(hi, 6.0, out=hi)
    one_hot = [(sextant == k).to(x.dtype) for k in range(6)]
    red, green, blue = out.unbind(1)
    # R, G, B per sextant 0..5: (v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q).
    for channel, picks in ((red, "vqpptv"), (green, "tvvqpp"), (blue, "pptvvq")):
        values = {"v": v, "t": t, "p": p, "q": q}
        torch.mul(values[picks[0]], one_hot[0], out=channel)
        for k in range(1, 6):
            channel.addcmul_(values[picks[k]], one_hot[k])


def hsv_to_rgb(x: Tensor) -> Tensor:
    """HSV (N, 3, H, W) with channels in [0, 1] -> RGB (N, 3, H, W), as ``skimage.color.hsv2rgb``."""
    _check(x, "hsv_to_rgb")
    return _chunked(_hsv_to_rgb_into, x)
