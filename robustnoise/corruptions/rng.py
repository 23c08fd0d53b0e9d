"""Per-image random streams from torch's own generator, and the per-sample seeds they are keyed by.

:func:`sample_seeds` hashes (base seed, dataset index, corruption key, severity) into one int64 seed per image; every
draw of a corruption then comes from a ``torch.Generator`` seeded with (that seed, a stream number) through
:func:`generators` (CPU: Mersenne Twister; CUDA: Philox), one generator per image. So an image's corruption depends
only on its own seed, not on its batch or the DataLoader workers. Same seed -> same draws on the same device type.

Measured on a full 19 x 5 ImageNet-C evaluation batch (224 px, batch 64, one thread, CPU time): 12.5 s with torch's
generators against 10.5 s with the former hand-written counter-based RNG; the difference was ``torch.poisson`` in
shot noise (2.3 against 0.95 s). Images on the 1/255 grid have only 256 rates per severity, so shot noise samples
them from per-rate alias tables with one 63-bit word of :func:`bits` per value (``noise.shot_noise_table``; 1.7
against 7.6 ms per 224 px image) and keeps ``torch.poisson`` for other images. ``python -m benchmarks.corruptions``
prints the share of torch's random-number kernels in a full 19 x 5 run: 12 % at 224 px, yet no vectorised path is
faster here (per value, one core): torch's ``uniform_`` / ``normal_`` 2.6 ns, a counter hash in torch int32 ops 2.3 ns
per uniform (normals add Box-Muller's 1.2 ns), numpy's PCG64 1.7 ns per uniform but 9.2 ns per normal.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import torch
from torch import Tensor

__all__ = ["bits", "generators", "normal", "poisson", "sample_seeds", "uniform"]

_MASK32 = 0xFFFFFFFF
_MUL1 = 0x7FEB352D  # < 2**31, so x * _MUL1 < 2**63 for any 32-bit x (int64 tensors)
_MUL2 = 0x846CA68B - (1 << 32)  # same product modulo 2**32 as 0x846CA68B, with |x * _MUL2| < 2**63
_GOLDEN = 0x9E3779B9
_TAG_SEED = 0x5EED5EED
_TAG_STREAM = 0x57AE

_Word = TypeVar("_Word", int, Tensor)
_Device = torch.device | str | None


def _mix32(x: _Word) -> _Word:
    """lowbias32 of values in [0, 2**32): Python ints or int64 tensors."""
    x = x ^ (x >> 16)
    x = (x * _MUL1) & _MASK32
    x = x ^ (x >> 15)
    x = (x * _MUL2) & _MASK32
    return x ^ (x >> 16)


def _absorb(*words: int) -> int:
    """Hash a sequence of arbitrary Python ints (each reduced modulo 2**64) into one 32-bit key."""
    h = _mix32(_GOLDEN ^ len(words))
    for word in words:
        word &= (1 << 64) - 1
        h = _mix32(h ^ (word & _MASK32))
        h = _mix32(h ^ (word >> 32))
    return h


def _seed(index: _Word, key_a: int, key_b: int) -> _Word:
    """The seed of one int64 index (a Python int or a tensor of them)."""
    a = _mix32((index & _MASK32) ^ key_a)
    b = _mix32(((index >> 32) & _MASK32) ^ key_b ^ a)  # for a fixed high half this is a bijection of the low half
    c = _mix32(a ^ b ^ key_b)
    return (b - ((b >> 31) << 32)) * (1 << 32) + c  # b as signed 32 bits is the high half: no int64 overflow


def sample_seeds(base_seed: int, indices: Tensor, *salt: int) -> Tensor:
    """Per-sample int64 seeds (shape and device of the integer tensor ``indices``) from a base seed (any Python int),
    dataset indices and salts (e.g. corruption key and severity); distinct indices below 2**32 get distinct seeds."""
    if indices.dtype.is_floating_point or indices.dtype.is_complex or indices.dtype == torch.bool:
        raise TypeError(f"indices must be an integer tensor, got {indices.dtype}")
    key_a = _absorb(_TAG_SEED, int(base_seed), *[int(s) for s in salt])
    key_b = _mix32(key_a ^ _GOLDEN)
    if indices.numel() <= 8:  # on Python ints: 50 against 290 us for one index
        values = [_seed(i, key_a, key_b) for i in indices.reshape(-1).tolist()]
        return torch.tensor(values, dtype=torch.int64, device=indices.device).view(indices.shape)
    return _seed(indices.to(torch.int64), key_a, key_b)


def generators(seeds: Tensor, stream: int, device: torch.device | str) -> Iterator[torch.Generator]:
    """One ``torch.Generator`` on ``device`` per seed, seeded with a 64-bit hash of (seed, stream)."""
    if not isinstance(seeds, Tensor) or seeds.dtype != torch.int64 or seeds.dim() != 1:
        raise TypeError("seeds must be a 1-D int64 tensor (one seed per sample)")
    for seed in seeds.tolist():
        key = (_absorb(_TAG_STREAM, seed, stream) << 32) | _absorb(_TAG_STREAM, stream, seed)
        yield torch.Generator(device).manual_seed(key)


def _compute_device(device: torch.device | str) -> torch.device:
    """Where to draw: MPS has no float64, so its draws are made on the CPU."""
    device = torch.device(device)
    return torch.device("cpu") if device.type == "mps" else device


def _draw(
    seeds: Tensor, shape: tuple[int, ...], stream: int, device: _Device, dtype: torch.dtype, fill: str, *args: float
) -> Tensor:
    """(N, *shape) draws, row ``i`` filled by ``Tensor.<fill>(*args)`` (``uniform_``, ``normal_``, ...) from its
    stream."""
    target = seeds.device if device is None else torch.device(device)
    where = _compute_device(target)
    out = torch.empty((len(seeds), *shape), dtype=dtype, device=where)
    for row, gen in zip(out, generators(seeds, stream, where)):
        getattr(row, fill)(*args, generator=gen)
    return out.to(target)


def uniform(
    seeds: Tensor,
    shape: tuple[int, ...],
    stream: int = 0,
    device: _Device = None,
    dtype: torch.dtype = torch.float32,
    low: float = 0.0,
) -> Tensor:
    """Uniform draws on [low, 1) (like ``np.random.uniform``), shape (N, *shape), from sample ``i``'s own stream."""
    return _draw(seeds, tuple(shape), stream, device, dtype, "uniform_", low, 1.0)


def normal(
    seeds: Tensor,
    shape: tuple[int, ...],
    stream: int = 0,
    device: _Device = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard normal draws, shape (N, *shape), from sample ``i``'s own stream; drawn in float32 and cast to
    ``dtype``, so that float32 and float64 images get the same noise."""
    return _draw(seeds, tuple(shape), stream, device, torch.float32, "normal_").to(dtype)


def bits(seeds: Tensor, shape: tuple[int, ...], stream: int = 0, device: _Device = None) -> Tensor:
    """Uniform int64 in [0, 2**63), shape (N, *shape), from sample ``i``'s own stream."""
    return _draw(seeds, tuple(shape), stream, device, torch.int64, "random_")


def poisson(rate: Tensor, seeds: Tensor, stream: int = 0) -> Tensor:
    """Poisson counts (float64, shape of ``rate`` (N, ...)) with the given rates, sample ``i`` from its own stream."""
    if rate.shape[:1] != seeds.shape:
        raise ValueError(f"need one seed per sample: seeds {tuple(seeds.shape)}, rates {tuple(rate.shape)}")
    where = _compute_device(rate.device)
    rate = rate.detach().to(device=where, dtype=torch.float64)
    out = torch.empty_like(rate)
    for i, gen in enumerate(generators(seeds, stream, where)):
        out[i] = torch.poisson(rate[i], generator=gen)
    return out.to(seeds.device)
