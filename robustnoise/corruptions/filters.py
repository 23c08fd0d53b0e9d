"""Batched linear filters for image tensors (..., H, W), any device and floating dtype, and the chunking helper.

Border modes beyond the edge of ``abcd`` (OpenCV / SciPy names), for any padding width: ``replicate`` ``dddd``
(``BORDER_REPLICATE`` / ``nearest``), ``reflect`` ``cba`` (``BORDER_REFLECT_101`` / ``mirror``), ``symmetric``
``dcba`` (``BORDER_REFLECT`` / ``reflect``), ``circular`` ``abcd`` (``BORDER_WRAP`` / ``wrap``), ``constant`` zeros.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "BORDER_MODES",
    "correlate1d",
    "correlate2d",
    "gaussian_filter",
    "gaussian_kernel1d",
    "map_image_chunks",
    "opencv_gaussian_kernel1d",
    "pad2d",
    "padding_indices",
    "working_dtype",
]

BORDER_MODES: tuple[str, ...] = ("replicate", "reflect", "symmetric", "circular", "constant")

_CPU_CHUNK_ELEMENTS = 1 << 19  # 2 MiB of float32 (3.5 images of 3 x 224 x 224): intermediates stay in cache
_DIRECT_TAP_LIMIT = 16  # 2-D kernels with more non-zero taps go by FFT (one shifted-slice pass per tap below it)
# Longer 1-D kernels go as blocked Toeplitz GEMMs of _TOEPLITZ_BLOCK outputs per block: above 17 taps, or above 5 on
# tensors of at least _GEMM_MIN_ELEMENTS values (enough rows per GEMM; measured at 224 px, one thread).
_DIRECT_1D_TAP_LIMIT = 17
_GEMM_MIN_ELEMENTS = 1 << 18
_TOEPLITZ_BLOCK = 32


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other floating dtype (float32, float16, bfloat16) is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# Batching


def map_image_chunks(
    fn: Callable[..., Tensor],
    images: Tensor,
    *per_image: Tensor,
    max_elements: int = _CPU_CHUNK_ELEMENTS,
    out: Tensor | None = None,
    into: bool = False,
) -> Tensor:
    """``fn(images[chunk], *(t[chunk] for t in per_image))`` over consecutive chunks of the batch, stacked along dim 0
    into ``out`` (given, or allocated like the first result) while in cache: the one chunking helper of the corruptions.
    ``into``: ``fn(images[chunk], out[chunk], ...)`` writes its result into ``out`` itself (allocated like ``images``
    if not given): no copy.

    On the CPU each chunk holds about ``max_elements`` values; accelerators get one chunk. Corruptions treat every
    image independently, so the chunking never changes a result.
    """
    num = images.shape[0]
    per = max(1, images[0].numel()) if num else 1
    step = max(1, max_elements // per) if images.device.type == "cpu" else max(1, num)
    if into and out is None:
        out = torch.empty_like(images, memory_format=torch.contiguous_format)
    if out is None and num <= step:
        return fn(images, *per_image)
    for start in range(0, num, step):
        s = slice(start, min(start + step, num))
        if into:
            fn(images[s], out[s], *(t[s] for t in per_image))
            continue
        result = fn(images[s], *(t[s] for t in per_image))
        if out is None:
            out = result.new_empty((num, *result.shape[1:]))
        out[s] = result
    return out


# Padding


def padding_indices(size: int, before: int, after: int, mode: str, device: torch.device | str | None = None) -> Tensor:
    """Source index (int64, length ``before + size + after``) of every position of a padded axis (not ``constant``)."""
    i = torch.arange(-before, size + after, device=device, dtype=torch.int64)
    if mode == "replicate":
        return i.clamp_(0, size - 1)
    if mode == "circular":
        return i.remainder_(size)
    if mode == "reflect":
        if size == 1:
            return torch.zeros_like(i)
        period = 2 * (size - 1)
        i = i.remainder_(period)
        return torch.where(i >= size, period - i, i)
    if mode == "symmetric":
        period = 2 * size
        i = i.remainder_(period)
        return torch.where(i >= size, period - 1 - i, i)
    raise ValueError(f"unknown border mode {mode!r}; valid: {', '.join(m for m in BORDER_MODES if m != 'constant')}")


def pad2d(x: Tensor, top: int, bottom: int, left: int, right: int, mode: str = "replicate") -> Tensor:
    """Pad the last two dims of ``x`` (..., H, W) with any border mode and width; one copy of the interior, the
    margins gathered."""
    if mode not in BORDER_MODES:
        raise ValueError(f"unknown border mode {mode!r}; valid: {', '.join(BORDER_MODES)}")
    if top == bottom == left == right == 0:
        return x
    if mode == "constant":
        return F.pad(x, (left, right, top, bottom))
    h, w = x.shape[-2:]
    out = x.new_empty((*x.shape[:-2], top + h + bottom, left + w + right))
    out[..., top : top + h, left : left + w] = x
    if left or right:
        cols = padding_indices(w, left, right, mode, x.device)
        if left:
            out[..., top : top + h, :left] = x.index_select(-1, cols[:left])
        if right:
            out[..., top : top + h, left + w :] = x.index_select(-1, cols[left + w :])
    if top or bottom:
        rows = padding_indices(h, top, bottom, mode, x.device) + top  # rows of `out`, already padded sideways
        if top:
            out[..., :top, :] = out.index_select(-2, rows[:top])
        if bottom:
            out[..., top + h :, :] = out.index_select(-2, rows[top + h :])
    return out


# Kernels


def gaussian_kernel1d(sigma: float, truncate: float = 4.0, dtype: torch.dtype = torch.float64) -> Tensor:
    """Normalised taps ``exp(-x^2 / (2 sigma^2))``, ``|x| <= int(truncate * sigma + 0.5)``, of
    ``scipy.ndimage.gaussian_filter`` (and scikit-image ``gaussian``); computed in float64."""
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    radius = int(truncate * float(sigma) + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    phi = torch.exp(-0.5 / float(sigma) ** 2 * x * x)
    return (phi / phi.sum()).to(dtype)


def opencv_gaussian_kernel1d(ksize: int, sigma: float, dtype: torch.dtype = torch.float64) -> Tensor:
    """Taps of OpenCV ``getGaussianKernel(ksize, sigma)`` for odd ``ksize`` and ``sigma > 0`` (float64)."""
    x = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    g = torch.exp(-(x * x) / (2.0 * float(sigma) ** 2))
    return (g / g.sum()).to(dtype)


# Correlation


def _accumulate_taps(padded: Tensor, taps: list[tuple[int, int, float]], h: int, w: int) -> Tensor:
    """``sum_k weight_k * padded[..., dy_k : dy_k + h, dx_k : dx_k + w]`` for taps ``(dy, dx, weight)``."""
    dy, dx, wt = taps[0]
    out = torch.mul(padded[..., dy : dy + h, dx : dx + w], wt)
    for dy, dx, wt in taps[1:]:
        out.add_(padded[..., dy : dy + h, dx : dx + w], alpha=wt)
    return out


@functools.lru_cache(maxsize=64)
def _block_matrices(
    size: int, weights: tuple[float, ...], mode: str, device: torch.device, dtype: torch.dtype
) -> tuple[tuple[int, int, int, int, Tensor], ...]:
    """Per block of ``_TOEPLITZ_BLOCK`` outputs: (first output, end, first input, end, (outputs, inputs) matrix), the
    block's rows of :func:`_correlation_matrix` restricted to the inputs they read (the border folded in)."""
    matrix = _correlation_matrix(size, weights, mode)
    blocks = []
    for start in range(0, size, _TOEPLITZ_BLOCK):
        rows = matrix[start : start + _TOEPLITZ_BLOCK]
        read = torch.nonzero(rows.any(0)).view(-1).tolist() or [0, -1]
        lo, hi = read[0], read[-1] + 1
        blocks.append((start, start + len(rows), lo, hi, rows[:, lo:hi].to(device, dtype)))
    return tuple(blocks)


def _correlate1d_blocked(x: Tensor, weights: tuple[float, ...], dim: int, mode: str) -> Tensor:
    """Correlation along ``dim`` as one GEMM per block of outputs (read in place from ``x``, written in place into the
    result) instead of one pass per tap: no padded copy, the border is folded into the edge blocks' matrices."""
    h, w = x.shape[-2:]
    out = x.new_empty(x.shape)
    blocks = _block_matrices(w if dim == -1 else h, weights, mode, x.device, x.dtype)
    if dim == -1:
        rows, dest = x.reshape(-1, w), out.view(-1, w)
        for start, stop, lo, hi, t in blocks:
            torch.mm(rows[:, lo:hi], t.t(), out=dest[:, start:stop])
    else:
        planes, dest = x.reshape(-1, h, w), out.view(-1, h, w)
        for start, stop, lo, hi, t in blocks:
            torch.bmm(t.expand(len(planes), -1, -1), planes[:, lo:hi], out=dest[:, start:stop])
    return out


def correlate1d(x: Tensor, weights: Tensor, dim: int, mode: str = "replicate", method: str = "auto") -> Tensor:
    """``scipy.ndimage.correlate1d`` of ``x`` along ``dim`` (-1: width, -2: height) with centred odd-length ``weights``.

    Args:
        method: ``direct`` (one shifted-slice pass per non-zero tap), ``matmul`` (blocked Toeplitz GEMMs) or ``auto``:
            direct up to 17 (large tensors: 5) non-zero taps, matmul above (faster on CPU).
    """
    r = (weights.numel() - 1) // 2
    h, w = x.shape[-2:]
    values = weights.detach().to("cpu", torch.float64)
    if method == "auto":
        limit = 5 if x.numel() >= _GEMM_MIN_ELEMENTS else _DIRECT_1D_TAP_LIMIT
        method = "direct" if int((values != 0).sum()) <= limit else "matmul"
    if method == "matmul":
        return _correlate1d_blocked(x, tuple(values.tolist()), dim, mode)
    padded = pad2d(x, 0, 0, r, r, mode) if dim == -1 else pad2d(x, r, r, 0, 0, mode)
    taps = [(0, j, v) if dim == -1 else (j, 0, v) for j, v in enumerate(values.tolist()) if v != 0.0]
    return _accumulate_taps(padded, taps, h, w)


@functools.lru_cache(maxsize=64)
def _correlation_matrix(size: int, weights: tuple[float, ...], mode: str) -> Tensor:
    """(size, size) float64 matrix M with ``M @ column`` = :func:`correlate1d` of the column (``mode`` border)."""
    r = (len(weights) - 1) // 2
    source = torch.arange(-r, size + r) if mode == "constant" else padding_indices(size, r, r, mode)
    matrix = torch.zeros(size, size + 1, dtype=torch.float64)  # column `size`: the zeros beyond a constant border
    rows = torch.arange(size)
    source = torch.where((source >= 0) & (source < size), source, size)
    for t, weight in enumerate(weights):
        matrix.index_put_((rows, source[t : t + size]), torch.tensor(weight, dtype=torch.float64), accumulate=True)
    return matrix[:, :size]


def gaussian_filter(
    x: Tensor, sigma: float, truncate: float = 4.0, mode: str = "replicate", method: str = "auto"
) -> Tensor:
    """Separable Gaussian blur of the last two dims (height first), as ``scipy.ndimage.gaussian_filter`` / skimage
    ``gaussian`` (default border ``replicate`` = their ``nearest``).

    Args:
        method: ``auto`` (:func:`correlate1d` per axis) or ``dense``: products with the (H x H) and (W x W) filter
            matrices, the border folded in; several times faster up to about 64 px, quadratic in the size.
    """
    kernel = gaussian_kernel1d(sigma, truncate)
    if method == "dense":  # an index border mode (not 'constant') folded into the matrices
        h, w = x.shape[-2:]
        taps = tuple(kernel.tolist())
        rows = _correlation_matrix(h, taps, mode).to(device=x.device, dtype=x.dtype)
        cols = _correlation_matrix(w, taps, mode).to(device=x.device, dtype=x.dtype)
        return torch.matmul(torch.matmul(rows, x), cols.t())
    if method != "auto":
        raise ValueError(f"method must be 'auto' or 'dense', got {method!r}")
    return correlate1d(correlate1d(x, kernel, -2, mode), kernel, -1, mode)


def _fft_size(n: int) -> int:
    """Smallest ``m 2^a >= n`` with ``m`` in (1, 3, 5, 15): the lengths the CPU FFT handles fastest."""
    best = 1 << max(0, (n - 1).bit_length())
    for m in (3, 5, 15):
        size = m
        while size < n:
            size *= 2
        best = min(best, size)
    return best


def correlate2d(x: Tensor, kernel: Tensor, mode: str = "reflect", method: str = "auto") -> Tensor:
    """2-D correlation of the last two dims of ``x`` with an odd-sized, centred ``kernel`` (kh, kw), as OpenCV
    ``filter2D`` (default border ``reflect`` = ``BORDER_REFLECT_101``); all-zero border rows and columns are cropped.

    Args:
        method: ``direct`` (one shifted-slice pass per non-zero tap), ``fft`` (real FFT of the padded image) or
            ``auto`` (direct up to 16 non-zero taps).
    """
    k = kernel.detach().to("cpu", torch.float64)
    nz = torch.nonzero(k)
    ry, rx = (k.shape[0] - 1) // 2, (k.shape[1] - 1) // 2
    cy = int((nz[:, 0] - ry).abs().max())  # smallest centred crop that keeps every non-zero tap
    cx = int((nz[:, 1] - rx).abs().max())
    k = k[ry - cy : ry + cy + 1, rx - cx : rx + cx + 1]
    if method == "auto":
        method = "direct" if len(nz) <= _DIRECT_TAP_LIMIT else "fft"
    h, w = x.shape[-2:]
    if method == "direct":
        taps = [(int(i), int(j), float(k[i, j])) for i, j in torch.nonzero(k).tolist()]
        return _accumulate_taps(pad2d(x, cy, cy, cx, cx, mode), taps, h, w)
    # Circular correlation on an (lh, lw) grid: out[y, x] = sum_{i, j} k[i, j] padded[y + i, x + j] never wraps for
    # y < h, x < w when lh >= h + 2 cy and lw >= w + 2 cx (the border mode fills the rest: no zero-padded copy).
    # Two real planes go as one complex plane a + ib (the real kernel keeps their results in the real and imaginary
    # parts) where torch's CPU irfft2 is slow: below 2^15 values per plane (defocus_blur 1.8x faster at 32 px, 1.1x
    # slower at 224 px).
    lh, lw = _fft_size(h + 2 * cy), _fft_size(w + 2 * cx)
    planes = pad2d(x, cy, lh - h - cy, cx, lw - w - cx, mode).reshape(-1, lh, lw)
    if lh * lw >= 1 << 15:
        k_spec = torch.conj(torch.fft.rfft2(k.to(device=x.device, dtype=x.dtype), s=(lh, lw)))
        return torch.fft.irfft2(torch.fft.rfft2(planes).mul_(k_spec), s=(lh, lw))[:, :h, :w].view(x.shape)
    half = (len(planes) + 1) // 2
    z = torch.complex(planes[:half], F.pad(planes[half:], (0, 0, 0, 0, 0, 2 * half - len(planes))))
    k_spec = torch.conj(torch.fft.fft2(k.to(device=x.device, dtype=z.dtype), s=(lh, lw)))
    y = torch.view_as_real(torch.fft.ifft2(torch.fft.fft2(z).mul_(k_spec)))[:, :h, :w]
    return torch.cat([y[..., 0], y[..., 1]])[: len(planes)].view(*x.shape[:-2], h, w)
