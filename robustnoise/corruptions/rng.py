"""Counter-based, stateless random numbers in plain, vectorised torch ops.

Every draw is a pure function of ``(per-sample 64-bit seed, stream, element counter)``, like Philox in Salmon et al.
(2011), "Parallel random numbers: as easy as 1, 2, 3". That makes a sample's noise independent of the batch it is in,
of the batch size and order, of the DataLoader worker count and of how the work is split into blocks, and lets the
whole batch be drawn in one vectorised call.

Random words. A sample's seed and the stream are hashed (in int64 or Python ints, off the hot path) into two 32-bit
keys, an odd multiplier ``m`` and an offset ``a``. The word at counter ``c`` is ``h(H(c) * m + a mod 2**32)``: ``H``
is Chris Wellons' ``lowbias32`` (hash-prospector) of ``c`` XOR a tag, a fixed bijection of the counter that is
computed once per width and cached, and ``h`` is ``lowbias32`` with its last shift arithmetic instead of logical,
evaluated in place on int32 tensors (12 elementwise ops, the only per-element hashing). The result is a 31-bit word:
``h`` maps ``r = lowbias32(x)`` to ``r`` if ``r < 2**31``, else to ``r ^ 0xFFFF0000``, a uniform two-to-one map onto
``[0, 2**31)``. So every word goes through two rounds of lowbias32 with a per-sample affine map in between: since the
counter is multiplied by a per-sample key, the draws of two samples are not shifted copies of each other (they would
be with ``h(c ^ key)``), and since the counter is hashed first, no multiplier is weak (used directly on the counter,
``m = 3`` or ``2**16 + 1`` gives visibly correlated words). Within a sample, ``c -> lowbias32(H(c) m + a)`` is a
bijection, so words coincide only by chance, through the final fold. The hot path relies on int32 multiplication
wrapping modulo 2**32, as torch's CPU (vector and scalar) and CUDA kernels do; ``tests/test_corruptions_noise.py``
checks the words against a pure-Python reference, and checks their bits for balance and independence.

Work is done in cache-sized blocks (whole rows, or part of one row); the private ``_*_blocks`` iterators yield them
so that :mod:`robustnoise.corruptions.noise` can apply its transform while a block is still in cache. Floating-point
transforms use torch's native vectorised functions: float32 ``log``/``sqrt``/``cos``/``sin`` for Box-Muller normals,
integer-threshold tables and float64 arithmetic (``exp``, ``log``, a ``lgamma`` table) for Poisson counts.

Reproducibility. On a given device every draw is a deterministic function of (seed, stream, position). Across CPU
and CUDA: the integer words, and therefore ``uniform`` (both dtypes are exact transforms of the words) and
``bernoulli``, are bit-identical, and so is ``sample_seeds``. ``normal`` uses the device's float32 ``log``, ``cos``
and ``sin``, so CPU and CUDA agree to a few float32 ulps, not bitwise. ``poisson`` counts for rates below 64 come
from integer comparisons against tables built on the CPU, identical on every device, except that about 2-4% of the
elements are finished by a float64 CDF search (and rates of 64 and more by float64 rejection tests) whose
``exp``/``log`` may differ by an ulp between devices: a count can then differ only when a uniform falls within about
1e-15 of a decision boundary.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor

__all__ = ["bernoulli", "normal", "poisson", "sample_seeds", "uniform"]

_MASK32 = 0xFFFFFFFF
_MUL1 = 0x7FEB352D  # < 2**31, so x * _MUL1 < 2**63 for any 32-bit x (int64 path) and a valid int32 scalar
_MUL2 = 0x846CA68B - (1 << 32)  # same product modulo 2**32 as 0x846CA68B, but |x * _MUL2| < 2**63 and an int32
_GOLDEN = 0x9E3779B9

# Domain-separation tags: draws of different kinds never share a stream key.
_TAG_SEED = 0x5EED5EED
_TAG_UNIFORM = 0x1
_TAG_NORMAL = 0x2
_TAG_BERNOULLI = 0x3
_TAG_POISSON_TABLE = 0x4
_TAG_POISSON_PTRS = 0x5
_TAG_COUNTER = 0x2545F491  # H(c) = lowbias32(c ^ _TAG_COUNTER)

_WORD_BITS = 31  # words are uniform on [0, 2**31)
_WORD_SCALE = 2.0**-_WORD_BITS
_MAX_COUNTER = 1 << 31  # counters are int32
_CPU_CHUNK = 1 << 17  # elements per block on the CPU, so that a block's working set stays in cache
_ACCELERATOR_CHUNK = 1 << 22
_PYTHON_KEYS = 8  # up to this many samples, keys are derived with Python ints (fewer tiny tensor ops)
_PTRS_MAX_ROUNDS = 48  # a round rejects with probability < 0.25: all 48 fail with probability < 1e-28
_LOG_FACTORIAL_TABLE_SIZE = 1024  # log(k!) from a table below this, from torch.lgamma above

Block = tuple[int, int, int, int]  # rows r0:r1, columns c0:c1 of an (N, width) array
Keys = tuple[Tensor, Tensor]  # (odd multiplier, offset): int32 tensors (N, 1)


def _mix32_int(x: int) -> int:
    """lowbias32 on a Python int (reference for the tensor version)."""
    x &= _MASK32
    x ^= x >> 16
    x = (x * _MUL1) & _MASK32
    x ^= x >> 15
    x = (x * _MUL2) & _MASK32
    x ^= x >> 16
    return x


def _mix32_(x: Tensor) -> Tensor:
    """lowbias32, in place, on an int64 tensor holding values in [0, 2**32) (seeds and keys: N elements)."""
    x ^= x >> 16
    x *= _MUL1
    x &= _MASK32
    x ^= x >> 15
    x *= _MUL2
    x &= _MASK32
    x ^= x >> 16
    return x


_CONSTANTS: dict[tuple[float, torch.dtype], Tensor] = {}


def _c(value: float, dtype: torch.dtype) -> Tensor:
    """A cached 0-dim CPU tensor: as an operand it avoids the per-op conversion of a Python scalar."""
    key = (value, dtype)
    tensor = _CONSTANTS.get(key)
    if tensor is None:
        tensor = _CONSTANTS[key] = torch.tensor(value, dtype=dtype)
    return tensor


def _mix31_(x: Tensor, tmp: Tensor) -> Tensor:
    """The word hash on an int32 tensor, in place (``tmp``: scratch of the same shape); returns values in [0, 2**31).

    lowbias32 with logical shifts emulated by masks, except the last shift, which is arithmetic: bit 31 of the
    result is then 0 and bits 16..30 are XORed with the old bit 31. Products wrap modulo 2**32.
    """
    i32 = torch.int32
    torch.bitwise_right_shift(x, _c(16, i32), out=tmp)
    x.bitwise_xor_(tmp.bitwise_and_(_c(0xFFFF, i32)))
    x.mul_(_c(_MUL1, i32))
    torch.bitwise_right_shift(x, _c(15, i32), out=tmp)
    x.bitwise_xor_(tmp.bitwise_and_(_c(0x1FFFF, i32)))
    x.mul_(_c(_MUL2, i32))
    torch.bitwise_right_shift(x, _c(16, i32), out=tmp)
    return x.bitwise_xor_(tmp)


def _word_int(counter: int, mult: int, offset: int) -> int:
    """One random word on Python ints (reference for the tensor version); keys as returned by :func:`_key_pair_int`."""
    r = _mix32_int(_mix32_int(counter ^ _TAG_COUNTER) * mult + offset)
    return r if r < (1 << 31) else r ^ 0xFFFF0000


def _absorb(*words: int) -> int:
    """Hash a sequence of arbitrary Python ints (each reduced modulo 2**64) into one 32-bit key."""
    h = _mix32_int(_GOLDEN ^ len(words))
    for word in words:
        word &= (1 << 64) - 1
        h = _mix32_int(h ^ (word & _MASK32))
        h = _mix32_int(h ^ (word >> 32))
    return h


def _signed32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def _split64(values: Tensor) -> tuple[Tensor, Tensor]:
    """Low and high 32-bit halves of int64 values (two's complement), each in [0, 2**32)."""
    return values & _MASK32, (values >> 32) & _MASK32


def _join64(hi: Tensor, lo: Tensor) -> Tensor:
    """The int64 whose two's complement halves are ``hi`` and ``lo``, without signed overflow."""
    hi_signed = hi - ((hi >> 31) << 32)  # [-2**31, 2**31)
    return hi_signed * (1 << 32) + lo  # the product is at least -2**63, so exactly representable


def _as_int32(values: Tensor) -> Tensor:
    """int64 values in [0, 2**32) as int32 with the same bit pattern."""
    return (values - ((values >> 31) << 32)).to(torch.int32)


def _seed_int(index: int, key_a: int, key_b: int) -> int:
    """:func:`sample_seeds` of one index, on Python ints."""
    index &= (1 << 64) - 1
    a = _mix32_int((index & _MASK32) ^ key_a)
    b = _mix32_int((index >> 32) ^ key_b ^ a)
    c = _mix32_int(a ^ b ^ key_b)
    return _signed32(b) * (1 << 32) + c


def sample_seeds(base_seed: int, indices: Tensor, *salt: int) -> Tensor:
    """Per-sample 64-bit seeds from a base seed, dataset indices and salts (e.g. corruption id and severity).

    Distinct indices below 2**32 always give distinct seeds for the same base seed and salts.

    Args:
        base_seed: Experiment-wide seed (any Python int; used modulo 2**64).
        indices: Integer tensor of dataset indices, any shape.
        *salt: Extra integers that select an independent family of seeds.

    Returns:
        int64 tensor of the shape and device of ``indices``.
    """
    if indices.dtype.is_floating_point or indices.dtype.is_complex or indices.dtype == torch.bool:
        raise TypeError(f"indices must be an integer tensor, got {indices.dtype}")
    key_a = _absorb(_TAG_SEED, int(base_seed), *[int(s) for s in salt])
    key_b = _mix32_int(key_a ^ _GOLDEN)
    if indices.numel() <= _PYTHON_KEYS:
        values = [_seed_int(i, key_a, key_b) for i in indices.reshape(-1).tolist()]
        return torch.tensor(values, dtype=torch.int64, device=indices.device).view(indices.shape)
    lo, hi = _split64(indices.to(torch.int64))
    a = _mix32_(lo ^ key_a)
    b = _mix32_(hi ^ key_b ^ a)  # for a fixed high half this is a bijection of the low half
    c = _mix32_(a ^ b ^ key_b)
    return _join64(b, c)


# ---------------------------------------------------------------------------------------------------------------------
# Counter-based words.


def _key_pair_int(seed: int, stream_key: int) -> tuple[int, int]:
    """Word keys (signed int32 values) of one seed and stream, on Python ints (reference for :func:`_stream_keys`)."""
    lo, hi = seed & _MASK32, (seed >> 32) & _MASK32
    k0 = _mix32_int(lo ^ _mix32_int(hi ^ stream_key))
    k1 = _mix32_int(hi ^ k0 ^ _mix32_int(stream_key ^ _GOLDEN))  # (k0, k1) is a bijection of the seed
    return _signed32(k0 | 1), _signed32(k1)


def _stream_keys(seeds: Tensor, stream_keys: Sequence[int]) -> list[Keys]:
    """Per-sample word keys for several streams at once: for each, an odd multiplier and an offset, int32 (N, 1)."""
    n, s = len(seeds), len(stream_keys)
    if n <= _PYTHON_KEYS:
        values = seeds.tolist()
        pairs = [[_key_pair_int(seed, key) for seed in values] for key in stream_keys]
        table = torch.tensor([[[p[i] for p in row] for i in (0, 1)] for row in pairs], dtype=torch.int32)
        table = table.to(seeds.device).view(s, 2, n, 1)
        return [(table[i, 0], table[i, 1]) for i in range(s)]
    lo, hi = _split64(seeds)
    keys = torch.tensor(stream_keys, dtype=torch.int64, device=seeds.device).unsqueeze(1)
    salts = torch.tensor([_mix32_int(k ^ _GOLDEN) for k in stream_keys], dtype=torch.int64, device=seeds.device)
    k0 = _mix32_(lo ^ _mix32_(hi ^ keys))
    k1 = _mix32_(hi ^ k0 ^ salts.unsqueeze(1))
    mult, offset = _as_int32(k0 | 1), _as_int32(k1)
    return [(mult[i].unsqueeze(1), offset[i].unsqueeze(1)) for i in range(s)]


def _keys(seeds: Tensor, stream_key: int) -> Keys:
    return _stream_keys(seeds, [stream_key])[0]


def _words_into(out: Tensor, tmp: Tensor, counters: Tensor, keys: Keys) -> Tensor:
    """``out = h(counters * mult + offset)``, broadcasting hashed counters ``H(c)`` (1, W) against keys (R, 1)."""
    torch.mul(counters, keys[0], out=out)
    out.add_(keys[1])
    return _mix31_(out, tmp)


def _counter_hashes(counters: Tensor) -> Tensor:
    """``H(c) = lowbias32(c ^ _TAG_COUNTER)`` as int32 (same bits), for integer counters in [0, 2**31)."""
    return _as_int32(_mix32_(counters.to(torch.int64) ^ _TAG_COUNTER))


def _words_at(keys: Keys, rows: Tensor, counters: Tensor) -> Tensor:
    """Words of the samples ``rows`` (int64) at ``counters`` (int32), element by element (1-D)."""
    out = _counter_hashes(counters).mul_(keys[0].view(-1).index_select(0, rows))
    out.add_(keys[1].view(-1).index_select(0, rows))
    return _mix31_(out, torch.empty_like(out))


class _Scratch:
    """Reusable flat buffers, so that blocks do not allocate (fresh memory costs page faults on first touch)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.buffers: dict[str, Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        numel = math.prod(shape)
        buf = self.buffers.get(name)
        if buf is None or buf.dtype != dtype or buf.numel() < numel:
            with torch.inference_mode(False):  # a normal tensor: reused both inside and outside inference mode
                buf = torch.empty(numel, dtype=dtype, device=self.device)
            self.buffers[name] = buf
        return buf[:numel].view(shape)


_SCRATCH_POOL = threading.local()


@contextmanager
def _scratch(device: torch.device) -> Iterator[_Scratch]:
    """Scratch space for one user at a time. On the CPU it is kept per thread and reused by later calls (a few MB:
    buffers never exceed one block); elsewhere it is fresh (the device's caching allocator recycles memory)."""
    if device.type != "cpu":
        yield _Scratch(device)
        return
    free = getattr(_SCRATCH_POOL, "free", None)
    if free is None:
        free = _SCRATCH_POOL.free = []
    scratch = free.pop() if free else _Scratch(device)
    try:
        yield scratch
    finally:
        free.append(scratch)


_COUNTERS: dict[tuple[torch.device, int], Tensor] = {}


def _counters(width: int, device: torch.device) -> Tensor:
    """The hashed counters ``H(0), ..., H(width - 1)``, int32 (1, width), cached."""
    counters = _COUNTERS.get((device, width))
    if counters is None:
        if len(_COUNTERS) >= 16:
            _COUNTERS.clear()
        hashed = _counter_hashes(torch.arange(width, dtype=torch.int64, device=device))
        counters = _COUNTERS[device, width] = hashed.unsqueeze(0)
    return counters


def _chunk(device: torch.device) -> int:
    return _CPU_CHUNK if device.type == "cpu" else _ACCELERATOR_CHUNK


def _blocks(rows: int, width: int, size: int) -> Iterator[Block]:
    """Blocks (r0, r1, c0, c1) of about ``size`` elements covering a (rows, width) array: whole rows or part of one.

    Draws never depend on the blocking: it only sets how much work one vectorised op does.
    """
    if rows == 0 or width == 0:
        return
    if width >= size:
        parts = -(-width // size)
        step = -(-width // parts)
        for r in range(rows):
            for c0 in range(0, width, step):
                yield r, r + 1, c0, min(c0 + step, width)
    else:
        per = max(1, size // width)
        for r0 in range(0, rows, per):
            yield r0, min(r0 + per, rows), 0, width


def _check_seeds(seeds: Tensor) -> None:
    if not isinstance(seeds, Tensor) or seeds.dtype != torch.int64 or seeds.dim() != 1:
        raise TypeError("seeds must be a 1-D int64 tensor (one seed per sample)")


def _numel(shape: tuple[int, ...]) -> int:
    count = math.prod(shape)
    if count > _MAX_COUNTER:
        raise ValueError(f"at most 2**31 draws per sample, got shape {shape}")
    return count


def _compute_device(device: torch.device) -> torch.device:
    """Where to draw: MPS has no float64, so its draws are made on the CPU (same values)."""
    return torch.device("cpu") if device.type == "mps" else device


def _prepare(
    seeds: Tensor, shape: tuple[int, ...], device: torch.device | str | None
) -> tuple[Tensor, int, torch.device]:
    """Seeds on the compute device, draws per sample, and the output device."""
    _check_seeds(seeds)
    target = seeds.device if device is None else torch.device(device)
    return seeds.to(_compute_device(target)), _numel(tuple(shape)), target


def _word_blocks(seeds: Tensor, width: int, stream_key: int) -> Iterator[tuple[int, int, int, int, Tensor]]:
    """Blocks ``(r0, r1, c0, c1, words)`` of the stream's words, int32 in [0, 2**31) (scratch: valid until the next)."""
    keys = _keys(seeds, stream_key)
    counters = _counters(width, seeds.device)
    with _scratch(seeds.device) as scratch:
        for r0, r1, c0, c1 in _blocks(len(seeds), width, _chunk(seeds.device)):
            shape = (r1 - r0, c1 - c0)
            words = _words_into(scratch.get("w", shape, torch.int32), scratch.get("t", shape, torch.int32),
                                counters[:, c0:c1], (keys[0][r0:r1], keys[1][r0:r1]))  # fmt: skip
            yield r0, r1, c0, c1, words


def _to_unit(words: Tensor, out: Tensor) -> Tensor:
    """Uniforms of :func:`uniform` from words (which may be overwritten) into a float32 or float64 ``out``."""
    if out.dtype == torch.float64:
        return out.copy_(words).add_(_c(0.5, out.dtype)).mul_(_c(_WORD_SCALE, out.dtype))  # exact
    words.bitwise_right_shift_(_c(_WORD_BITS - 23, torch.int32))
    return out.copy_(words).add_(_c(0.5, out.dtype)).mul_(_c(2.0**-23, out.dtype))  # exact in float32


def _word_threshold(p: float) -> int:
    """The number t of words with ``(w + 0.5) / 2**31 < p``: that comparison is exactly ``w < t``.

    ``p 2**31 - 0.5`` is exact for p in [0, 1], and w < x  <=>  w < ceil(x) for integer w.
    """
    if not p > 0.0:  # also NaN
        return 0
    return 1 << _WORD_BITS if p >= 1.0 else math.ceil(p * 2.0**_WORD_BITS - 0.5)


def uniform(
    seeds: Tensor,
    shape: tuple[int, ...],
    stream: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Uniform draws in the open interval (0, 1).

    Args:
        seeds: int64 tensor (N,), one seed per sample.
        shape: Per-sample shape; the result has shape (N, *shape).
        stream: Independent stream number (any int).
        device: Output device (default: the device of ``seeds``).
        dtype: ``torch.float64``: ``(w + 0.5) / 2**31`` for a random 31-bit word ``w``. ``torch.float32``:
            ``(floor(w / 2**8) + 0.5) / 2**23``, the same draw to 23 bits (within 2**-24 of the float64 value),
            exactly representable and never 0 or 1.
    """
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"uniform supports float32 and float64, got {dtype}")
    seeds, count, target = _prepare(seeds, shape, device)
    out = torch.empty(len(seeds), count, dtype=dtype, device=seeds.device)
    for r0, r1, c0, c1, words in _word_blocks(seeds, count, _absorb(_TAG_UNIFORM, stream)):
        _to_unit(words, out[r0:r1, c0:c1])
    return out.view(len(seeds), *shape).to(target)


def _normal_blocks(seeds: Tensor, count: int, stream: int) -> Iterator[tuple[int, int, int, int, Tensor]]:
    """Blocks ``(r0, r1, c0, c1, z)`` of :func:`normal`'s float32 draws (scratch: valid until the next block)."""
    n, pairs = len(seeds), (count + 1) // 2
    radius_keys, angle_keys = _stream_keys(seeds, [_absorb(_TAG_NORMAL, stream, 0), _absorb(_TAG_NORMAL, stream, 1)])
    counters = _counters(pairs, seeds.device)
    f32 = torch.float32
    with _scratch(seeds.device) as scratch:
        for r0, r1, p0, p1 in _blocks(n, pairs, max(1, _chunk(seeds.device) // 2)):
            shape = (r1 - r0, p1 - p0)
            words, tmp = scratch.get("w", shape, torch.int32), scratch.get("t", shape, torch.int32)
            ctr = counters[:, p0:p1]
            radius = scratch.get("radius", shape, f32)
            radius.copy_(_words_into(words, tmp, ctr, (radius_keys[0][r0:r1], radius_keys[1][r0:r1])))
            radius.add_(_c(0.5, f32)).mul_(_c(_WORD_SCALE, f32)).log_().mul_(_c(-2.0, f32)).sqrt_()
            angle = scratch.get("angle", shape, f32)
            angle.copy_(_words_into(words, tmp, ctr, (angle_keys[0][r0:r1], angle_keys[1][r0:r1])))
            angle.mul_(_c(2.0 * math.pi * _WORD_SCALE, f32))
            z = scratch.get("z", (shape[0], shape[1], 2), f32)
            trig = scratch.get("trig", shape, f32)
            torch.mul(radius, torch.cos(angle, out=trig), out=z[..., 0])
            torch.mul(radius, torch.sin(angle, out=trig), out=z[..., 1])
            c0, c1 = 2 * p0, min(2 * p1, count)
            yield r0, r1, c0, c1, z.view(shape[0], 2 * shape[1])[:, : c1 - c0]


def normal(
    seeds: Tensor,
    shape: tuple[int, ...],
    stream: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard normal draws by Box-Muller (Box & Muller 1958), computed in float32 and cast to ``dtype``.

    Pair ``j`` takes a radius word and an angle word from two streams, ``u = (w_r + 0.5) / 2**31`` and
    ``theta = 2 pi w_a / 2**31`` (float32 arithmetic): element ``2j`` is ``sqrt(-2 log u) cos theta`` and element
    ``2j + 1`` the matching sine, an independent normal. The largest magnitude is ``sqrt(64 log 2) = 6.66``.
    """
    seeds, count, target = _prepare(seeds, shape, device)
    out = torch.empty(len(seeds), count, dtype=dtype, device=seeds.device)
    for r0, r1, c0, c1, z in _normal_blocks(seeds, count, stream):
        out[r0:r1, c0:c1].copy_(z)
    return out.view(len(seeds), *shape).to(target)


def bernoulli(
    p: float | Tensor,
    seeds: Tensor,
    shape: tuple[int, ...],
    stream: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """1 with probability ``p`` (a number or a tensor broadcastable to (N, *shape)), else 0.

    The result is ``u < p`` for float64 uniforms ``u`` as in :func:`uniform`, on a stream of its own; for a number
    ``p`` this is evaluated exactly as an integer comparison of the words.
    """
    seeds, count, target = _prepare(seeds, shape, device)
    n, stream_key = len(seeds), _absorb(_TAG_BERNOULLI, stream)
    if isinstance(p, Tensor):
        u = torch.empty(n, count, dtype=torch.float64, device=seeds.device)
        for r0, r1, c0, c1, words in _word_blocks(seeds, count, stream_key):
            _to_unit(words, u[r0:r1, c0:c1])
        return (u.view(n, *shape) < p.to(device=seeds.device, dtype=torch.float64)).to(device=target, dtype=dtype)
    threshold = _word_threshold(float(p))
    out = torch.empty(n, count, dtype=dtype, device=seeds.device)
    if threshold <= 0 or threshold >= 1 << _WORD_BITS:
        return out.fill_(float(threshold > 0)).view(n, *shape).to(target)
    for r0, r1, c0, c1, words in _word_blocks(seeds, count, stream_key):
        torch.le(words, threshold - 1, out=out[r0:r1, c0:c1])
    return out.view(n, *shape).to(target)


# ---------------------------------------------------------------------------------------------------------------------
# Poisson.
#
# Rates below 64 (all ImageNet-C shot-noise severities) use exact inversion accelerated by lookup tables: write the
# rate as lam = g + r with g = floor(lam) and r in [0, 1), so that X = A + B with independent A ~ Poisson(g) and
# B ~ Poisson(r) (Poisson additivity). A is the inversion of a uniform ``u_a`` against the CDF of the integer rate g,
# B the inversion of ``u_b`` against the CDF of r. Both uniforms are 31-bit: their top 11 bits (a "cell") come from
# one word per element, the 20 finer bits from two further streams that are only drawn when needed. A guide table
# per integer rate gives A for every cell the CDF does not cross (Chen & Asau 1974); for B, X_r(u) is non-decreasing
# in r, so where the tables of the two neighbouring grid rates j/64 <= r < (j+1)/64 agree on the cell, they give B.
# About 2-4% of the elements (cells that straddle a CDF step, or grid neighbours that disagree) are finished exactly
# in a second, pooled phase: a binary search in the thresholds of A, a sequential search for B.
#
# Rates of 64 and more use PTRS (below). Its round 0 runs per block; rejected elements are pooled over all blocks and
# finished together, so the many small later rounds cost Python overhead once per call rather than once per block.
# Every element gets the same arithmetic whichever block or phase it is in, so counts never depend on the blocking
# or on other elements.

_TABLE_RATE_BITS = 6  # rates below 2**6 use the tables
_TABLE_MAX_RATE = float(1 << _TABLE_RATE_BITS)
_FRACTION_BITS = 6  # the fractional part's grid: 1/64
_CELL_BITS = 11  # guide cells per table row
_FINE_BITS = _WORD_BITS - _CELL_BITS  # bits that refine a cell into a full 31-bit uniform
_TABLE_COLUMNS = 192  # CDF thresholds per row: enough to reach F(k) = 1 (to 2**-32) for rate 63
_INVERSION_MAX_STEPS = 100  # sequential search for B (rate < 1): P(B >= 100) < 1e-150
_LOG_FACTORIALS: dict[torch.device, Tensor] = {}
_POISSON_TABLES: dict[torch.device, _PoissonTables] = {}


def _cdf_thresholds(rates: Tensor) -> Tensor:
    """Integer CDF thresholds (rows, _TABLE_COLUMNS): ``u > F(k)  <=>  w > T[k]`` for ``u = (w + 0.5) / 2**31``.

    F is accumulated as in the sequential search: ``pmf_0 = exp(-rate)``, ``pmf_k = pmf_{k-1} * (rate / k)``,
    ``F(k) = F(k-1) + pmf_k``; then ``T[k] = floor(F(k) 2**31 - 0.5)`` (exact: a power-of-two scaling).
    """
    pmf = torch.exp(-rates)
    cdf = pmf.clone()
    columns = [cdf]
    for k in range(1, _TABLE_COLUMNS):
        pmf = pmf * (rates / k)
        cdf = cdf + pmf
        columns.append(cdf)
    thresholds = torch.floor(torch.stack(columns, dim=1) * 2.0**_WORD_BITS - 0.5).to(torch.int64)
    if not bool((thresholds[:, -1] == (1 << _WORD_BITS) - 1).all()):
        raise AssertionError("Poisson CDF table too short")
    return thresholds


def _cell_counts(thresholds: Tensor) -> tuple[Tensor, Tensor]:
    """Inversion counts X(w) = #{k : T[k] < w} at the first and the last word of every cell, (rows, 2**_CELL_BITS).

    Cell i holds the words [i s, (i + 1) s - 1], s = 2**_FINE_BITS: T[k] < i s iff floor(T[k] / s) + 1 <= i, and
    T[k] < (i + 1) s - 1 iff floor((T[k] + 1) / s) <= i, so both counts are cumulative histograms.
    """
    rows, cells = len(thresholds), 1 << _CELL_BITS
    offsets = torch.arange(rows).unsqueeze(1) * (cells + 1)
    counts = []
    for bins in (torch.div(thresholds, 1 << _FINE_BITS, rounding_mode="floor") + 1,
                 torch.div(thresholds + 1, 1 << _FINE_BITS, rounding_mode="floor")):  # fmt: skip
        histogram = torch.bincount((bins + offsets).reshape(-1), minlength=rows * (cells + 1))
        counts.append(histogram.view(rows, cells + 1).cumsum(1)[:, :cells])
    return counts[0], counts[1]


class _PoissonTables:
    """Guide tables, built once per device on the CPU (so every device gets the same tables).

    ``integer[g, i]``: A for cell i of the integer rate g, or -1 where the CDF steps inside the cell (int16).
    ``fraction[j, i]``: B for cell i of every rate in [j/64, (j+1)/64], or -1 where the rates j/64 and (j+1)/64
    disagree or the CDF steps inside the cell (int8). ``integer_lo/hi``: A at the first and last word of each cell,
    ``integer_thresholds``: the CDF thresholds of the integer rates, for the exact search.
    """

    def __init__(self, device: torch.device) -> None:
        integer = torch.arange(1 << _TABLE_RATE_BITS, dtype=torch.float64)
        fraction = torch.arange((1 << _FRACTION_BITS) + 1, dtype=torch.float64) / (1 << _FRACTION_BITS)
        thresholds = _cdf_thresholds(torch.cat([integer, fraction]))
        lo, hi = _cell_counts(thresholds)
        n_int = len(integer)
        a_lo, a_hi, b_lo, b_hi = lo[:n_int], hi[:n_int], lo[n_int:], hi[n_int:]
        self.integer = torch.where(a_lo == a_hi, a_lo, -1).to(torch.int16).reshape(-1).to(device)
        b_same = (b_lo[:-1] == b_hi[:-1]) & (b_hi[:-1] == b_lo[1:]) & (b_lo[1:] == b_hi[1:])
        self.fraction = torch.where(b_same, b_lo[:-1], -1).to(torch.int8).reshape(-1).to(device)
        self.integer_lo = a_lo.to(torch.int16).reshape(-1).to(device)  # row g, cell i at g * 2**_CELL_BITS + i
        self.integer_hi = a_hi.to(torch.int16).reshape(-1).to(device)
        self.integer_thresholds = thresholds[:n_int].to(torch.int32).reshape(-1).to(device)  # row g at g * columns

    @staticmethod
    def get(device: torch.device) -> _PoissonTables:
        tables = _POISSON_TABLES.get(device)
        if tables is None:
            tables = _POISSON_TABLES[device] = _PoissonTables(device)
        return tables


def _buffers(scratch: _Scratch | None, n: int, device: torch.device, prefix: str):
    """``buf(name, dtype)``: a length-n tensor, from ``scratch`` (names prefixed) or freshly allocated."""
    if scratch is None:
        return lambda name, dtype: torch.empty(n, dtype=dtype, device=device)
    return lambda name, dtype: scratch.get(prefix + name, (n,), dtype)


def _log_factorial(k: Tensor, buf=None) -> Tensor:
    """log(k!) for float64 integer values k >= 0: a table (math.lgamma) below 1024, torch.lgamma above."""
    buf = buf or _buffers(None, len(k), k.device, "")
    table = _LOG_FACTORIALS.get(k.device)
    if table is None:
        values = [math.lgamma(i + 1.0) for i in range(_LOG_FACTORIAL_TABLE_SIZE)]
        table = _LOG_FACTORIALS[k.device] = torch.tensor(values, dtype=torch.float64, device=k.device)
    index = buf("lf_index", torch.int64)
    index.copy_(torch.clamp(k, max=_LOG_FACTORIAL_TABLE_SIZE - 1, out=buf("lf_k", torch.float64)))
    out = torch.index_select(table, 0, index, out=buf("lf", torch.float64))
    if len(k) and float(k.max()) >= _LOG_FACTORIAL_TABLE_SIZE:
        large = (k >= _LOG_FACTORIAL_TABLE_SIZE).nonzero().squeeze(1)
        out.scatter_(0, large, torch.lgamma(k.index_select(0, large) + 1.0))
    return out


def _unit(words: Tensor) -> Tensor:
    """Float64 uniforms (w + 0.5) / 2**31, exact."""
    return words.to(torch.float64).add_(0.5).mul_(_WORD_SCALE)


def poisson(rate: Tensor, seeds: Tensor, stream: int = 0) -> Tensor:
    """Poisson draws with per-element rates, exact in distribution up to float64 rounding.

    Rates below 64 are split as ``floor(rate) + fraction``, and the two Poisson parts are drawn by table-guided
    inversion of two independent uniforms (see the comment above this function); their sum is exact by Poisson
    additivity. Rates of 64 and more use Hoermann's transformed rejection with squeeze, PTRS (Hoermann 1993, "The
    transformed rejection method for generating Poisson random variables"), in at most 48 vectorised rounds, each
    with its own pair of independent streams; only still-rejected elements take part in (and draw words for) the
    next round. An element rejected in all 48 rounds (probability < 1e-28) falls back to ``floor(rate)``, the mode.
    Every value depends only on its sample's seed, the stream and its position, never on other elements.

    Args:
        rate: Non-negative finite rates, floating tensor (N, ...).
        seeds: int64 tensor (N,).
        stream: Independent stream number.

    Returns:
        The counts as a tensor of ``rate``'s shape, dtype and device.
    """
    _check_seeds(seeds)
    if not rate.dtype.is_floating_point:
        raise TypeError(f"rate must be a floating tensor, got {rate.dtype}")
    if rate.dim() == 0 or rate.shape[0] != len(seeds):
        raise ValueError(f"rate must have shape (N, ...) with N = {len(seeds)} seeds, got {tuple(rate.shape)}")
    n, count = len(seeds), _numel(tuple(rate.shape[1:]))
    device = _compute_device(rate.device)
    sampler = _PoissonSampler(rate.detach().to(device).reshape(n, count), 1.0, seeds.to(device), stream)
    out = torch.empty(n, count, dtype=torch.float64, device=device)
    for r0, r1, c0, c1, counts in sampler.blocks():
        out[r0:r1, c0:c1] = counts
    positions, counts = sampler.finish()
    out.view(-1).scatter_(0, positions, counts)
    return out.view(rate.shape).to(device=rate.device, dtype=rate.dtype)


def _sparse_nonzero(values: Tensor) -> Tensor:
    """Indices (int64) of the nonzero entries of a 1-D bool/int8/int16 tensor; fast when they are rare.

    Scans 64-bit groups first (a view of the same memory), then only the groups that hold a nonzero entry.
    """
    n, group = len(values), 8 // values.element_size()
    m = n - n % group
    if values.device.type != "cpu" or m == 0 or values.storage_offset() % group:
        return values.nonzero().squeeze(1)
    words = values[:m].view(torch.int64).nonzero().squeeze(1)
    candidates = (words.mul_(group).unsqueeze(1) + torch.arange(group, device=values.device)).view(-1)
    found = candidates.index_select(0, values.index_select(0, candidates).nonzero().squeeze(1))
    if m < n:
        found = torch.cat([found, values[m:].nonzero().squeeze(1).add_(m)])
    return found


class _PoissonSampler:
    """One Poisson draw over rates ``float64(rate) * scale`` (``rate``: (N, count)), block by block.

    ``blocks()`` yields ``(r0, r1, c0, c1, counts)`` (float64 scratch, valid until the next block) in which a few
    counts are provisional; ``finish()`` then returns the flat positions and final counts of those.
    """

    def __init__(self, rate: Tensor, scale: float, seeds: Tensor, stream: int) -> None:
        if not (0.0 <= scale < math.inf):
            raise ValueError(f"scale must be finite and non-negative, got {scale}")
        self.rate, self.scale, self.seeds, self.stream = rate.contiguous(), float(scale), seeds, stream
        self.n, self.count = rate.shape
        self.device = seeds.device
        keys = [_absorb(_TAG_POISSON_TABLE, stream, part) for part in range(3)]
        keys += [_absorb(_TAG_POISSON_PTRS, stream, 0, which) for which in range(2)]
        keys = _stream_keys(seeds, keys)
        self.table_keys = keys[:3]
        self.ptrs_keys: dict[tuple[int, int], Keys] = {(0, 0): keys[3], (0, 1): keys[4]}
        self.table_left: list[Tensor] = []  # flat positions of table elements left for phase 2
        self.ptrs_left: list[tuple[Tensor, Tensor]] = []  # (flat position, rate) of PTRS elements rejected so far

    def _range(self, values: Tensor) -> tuple[float, float]:
        """(min, max) of the rates of ``values``, checked finite and non-negative."""
        low, high = (float(v) for v in torch.aminmax(values))  # NaN propagates to both
        low, high = low * self.scale, high * self.scale  # the same float64 products as the elementwise ones
        if not (low >= 0.0 and high < math.inf):
            raise ValueError("Poisson rates must be finite and non-negative")
        return low, high

    def round_keys(self, rnd: int, which: int) -> Keys:
        if (rnd, which) not in self.ptrs_keys:
            key = _absorb(_TAG_POISSON_PTRS, self.stream, rnd, 0), _absorb(_TAG_POISSON_PTRS, self.stream, rnd, 1)
            self.ptrs_keys[rnd, 0], self.ptrs_keys[rnd, 1] = _stream_keys(self.seeds, key)
        return self.ptrs_keys[rnd, which]

    def words_at(self, keys: Keys, positions: Tensor) -> Tensor:
        """Words at flat positions (int64)."""
        rows = torch.div(positions, self.count, rounding_mode="floor")
        return _words_at(keys, rows, (positions - rows * self.count).to(torch.int32))

    def blocks(self) -> Iterator[tuple[int, int, int, int, Tensor]]:
        with _scratch(self.device) as scratch:
            for block in _blocks(self.n, self.count, _chunk(self.device)):
                r0, r1, c0, c1 = block
                values = self.rate[r0:r1, c0:c1]
                low, high = self._range(values)
                lam = scratch.get("lam", values.shape, torch.float64)
                lam.copy_(values)
                if self.scale != 1.0:
                    lam.mul_(_c(self.scale, torch.float64))
                counts = scratch.get("counts", values.shape, torch.float64)
                self._head(_BlockContext(self, block, scratch), lam.view(-1), low, high, counts.view(-1))
                yield r0, r1, c0, c1, counts

    def _head(self, ctx: _BlockContext, lam: Tensor, low: float, high: float, result: Tensor) -> None:
        """Phase 1 on a block: counts into ``result``; elements left undecided are pooled for phase 2.

        With both kinds of rate, the majority's sampler runs on the whole block (on the minority's elements its
        results are discarded) and the minority's on its gathered elements.
        """
        if high < _TABLE_MAX_RATE:
            self._table_head(ctx, lam, result)
        elif low >= _TABLE_MAX_RATE:
            self._ptrs_head(ctx, lam, result)
        else:
            large = torch.ge(lam, _c(_TABLE_MAX_RATE, torch.float64))
            if 2 * int(large.sum()) <= len(lam):
                self._table_head(ctx, lam, result, valid=large.logical_not())
                idx = large.nonzero().squeeze(1)
                self._ptrs_head(ctx, lam.index_select(0, idx), result, idx=idx)
            else:
                self._ptrs_head(ctx, lam.clamp(min=_TABLE_MAX_RATE), result, valid=large)
                idx = large.logical_not_().nonzero().squeeze(1)
                self._table_head(ctx, lam.index_select(0, idx), result, idx=idx)

    def _table_head(
        self, ctx: _BlockContext, lam: Tensor, result: Tensor, idx: Tensor | None = None, valid: Tensor | None = None
    ) -> None:
        """Table counts of the block elements ``idx`` (None: all; then ``valid`` masks the rates below 64) into
        ``result``; the elements the tables do not decide go to phase 2."""
        tables, scratch, n = _PoissonTables.get(self.device), ctx.scratch, len(lam)
        i32, i16 = torch.int32, torch.int16
        t = torch.mul(lam, _c(float(1 << _FRACTION_BITS), torch.float64), out=scratch.get("t64", (n,), torch.float64))
        if valid is not None:  # large rates: any valid row (their counts are overwritten)
            t.clamp_(max=_TABLE_MAX_RATE * (1 << _FRACTION_BITS) - 1)
        t32 = scratch.get("t32", (n,), i32)
        t32.copy_(t)  # floor(64 lam): g = t >> 6, j = t & 63 (conversion truncates, i.e. floors here)
        words = ctx.words(self.table_keys[0]).view(-1)
        if idx is not None:
            words = words.index_select(0, idx)
        cells = torch.bitwise_right_shift(words, _c(_FINE_BITS, i32), out=scratch.get("cells", (n,), i32))
        index = torch.bitwise_right_shift(t32, _c(_FRACTION_BITS, i32), out=scratch.get("index", (n,), i32))
        index.bitwise_left_shift_(_c(_CELL_BITS, i32)).add_(cells)
        a = torch.index_select(tables.integer, 0, index, out=scratch.get("a", (n,), i16))
        torch.bitwise_right_shift(words, _c(_WORD_BITS - 2 * _CELL_BITS, i32), out=cells)
        index = t32.bitwise_and_(_c((1 << _FRACTION_BITS) - 1, i32)).bitwise_left_shift_(_c(_CELL_BITS, i32))
        index.add_(cells.bitwise_and_(_c((1 << _CELL_BITS) - 1, i32)))
        b = torch.index_select(tables.fraction, 0, index, out=scratch.get("b", (n,), torch.int8))
        bad = torch.bitwise_or(a, b, out=scratch.get("bad", (n,), i16)).bitwise_right_shift_(_c(15, i16))  # -1: -1
        if valid is not None:
            bad.mul_(valid)
        if idx is None:
            result.copy_(a.add_(b))
        else:
            result.scatter_(0, idx, a.add_(b).to(torch.float64))
        left = _sparse_nonzero(bad)
        if len(left):
            rates, left_words = lam.index_select(0, left), words.index_select(0, left)
            position = (left if idx is None else idx.index_select(0, left)).add_(ctx.start)
            self.table_left.append((position, rates, left_words))

    def _ptrs_head(
        self, ctx: _BlockContext, lam: Tensor, result: Tensor, idx: Tensor | None = None, valid: Tensor | None = None
    ) -> None:
        """PTRS round 0 on the block elements ``idx`` (None: all; then ``valid`` masks the rates of 64 and more,
        the others having been clamped to 64) into ``result``; rejected elements go to phase 2."""
        if _PTRS_MAX_ROUNDS < 1:
            k, accept = torch.floor(lam), torch.ones_like(lam, dtype=torch.bool)
        else:
            words = ctx.words(self.round_keys(0, 0)).view(-1)
            w_u = ctx.scratch.get("w_u", words.shape, torch.int32) if idx is None else None
            w_u = w_u.copy_(words) if idx is None else words.index_select(0, idx)
            w_v = ctx.words(self.round_keys(0, 1)).view(-1)
            w_v = w_v if idx is None else w_v.index_select(0, idx)
            scratch = ctx.scratch if idx is None else None
            k, accept = _ptrs_round(_PtrsConstants(lam, scratch), w_u, w_v, scratch)
        if idx is None:
            result.copy_(k)  # with ``valid``: the small rates' entries are overwritten by the tables
        else:
            result.scatter_(0, idx, k)
        pending = accept.logical_not_()
        if valid is not None:
            pending.logical_and_(valid)
        left = pending.nonzero().squeeze(1)
        if len(left):
            position = left.add(ctx.start) if idx is None else idx.index_select(0, left).add_(ctx.start)
            self.ptrs_left.append((position, lam.index_select(0, left)))

    def finish(self) -> tuple[Tensor, Tensor]:
        """Phase 2: flat positions (int64) and final counts (float64) of the elements left provisional."""
        positions = [torch.empty(0, dtype=torch.int64, device=self.device)]
        counts = [torch.empty(0, dtype=torch.float64, device=self.device)]
        if self.table_left:
            position, lam, words = (torch.cat(parts) for parts in zip(*self.table_left))
            positions.append(position)
            counts.append(self._table_exact(position, lam, words))
        if self.ptrs_left:
            position, lam = (torch.cat(parts) for parts in zip(*self.ptrs_left))
            for done, k in self._ptrs_tail(position, lam):
                positions.append(done)
                counts.append(k)
        return torch.cat(positions), torch.cat(counts)

    def _table_exact(self, position: Tensor, lam: Tensor, words: Tensor | None = None) -> Tensor:
        """A + B exactly, for rates below 64 at flat positions (the same values the tables give where they decide).

        ``words``: the elements' words of the first table stream, if already known.
        """
        tables = _PoissonTables.get(self.device)
        rows = torch.div(position, self.count, rounding_mode="floor")
        columns = (position - rows * self.count).to(torch.int32)

        def words_of(keys: Keys, sel: Tensor | None = None) -> Tensor:
            if sel is None:
                return _words_at(keys, rows, columns)
            return _words_at(keys, rows.index_select(0, sel), columns.index_select(0, sel))

        if words is None:
            words = words_of(self.table_keys[0])
        cells_a = torch.bitwise_right_shift(words, _FINE_BITS).to(torch.int64)
        cells_b = torch.bitwise_right_shift(words, _WORD_BITS - 2 * _CELL_BITS).bitwise_and_((1 << _CELL_BITS) - 1)
        integer = torch.floor(lam)
        g = integer.to(torch.int64)
        # A: the count at the cell's first word, then a binary search for #{k : T_g[k] < w_a} where the cell is
        # crossed by CDF steps; w_a = the cell's bits followed by 20 bits of the second stream.
        cell = g * (1 << _CELL_BITS) + cells_a
        a = tables.integer_lo.index_select(0, cell).to(torch.float64)
        crossed = (tables.integer.index_select(0, cell) < 0).nonzero().squeeze(1)
        if len(crossed):
            cell = cell.index_select(0, crossed)
            fine = words_of(self.table_keys[1], crossed).bitwise_and_((1 << _FINE_BITS) - 1)
            w_a = cells_a.index_select(0, crossed).bitwise_left_shift_(_FINE_BITS).add_(fine)
            count = tables.integer_lo.index_select(0, cell).to(torch.int64)
            hi = tables.integer_hi.index_select(0, cell).to(torch.int64)
            last = g.index_select(0, crossed).mul_(_TABLE_COLUMNS).sub_(1)  # T_g[k] at last + k + 1
            step = 1 << (int((hi - count).max()).bit_length() - 1)
            while step:  # binary lifting: the largest count in [lo, hi] with T_g[count - 1] < w_a (T_g is sorted)
                candidate = count + step
                index = (last + candidate.clamp(max=_TABLE_COLUMNS)).clamp_(min=0)
                ok = torch.le(candidate, hi).logical_and_(tables.integer_thresholds.index_select(0, index) < w_a)
                count.add_(ok.to(torch.int64).mul_(step))
                step >>= 1
            a.scatter_(0, crossed, count.to(torch.float64))
        # B: the table where both neighbouring grid rates agree, else a sequential search over the CDF of the
        # fraction r with u_b = the cell's bits followed by 20 bits of the third stream.
        j = torch.mul(lam - integer, float(1 << _FRACTION_BITS)).to(torch.int64)
        b = tables.fraction.index_select(0, j * (1 << _CELL_BITS) + cells_b).to(torch.float64)
        undecided = (b < 0).nonzero().squeeze(1)
        if len(undecided):
            fine = words_of(self.table_keys[2], undecided)
            w_b = cells_b.index_select(0, undecided).bitwise_left_shift_(_FINE_BITS)
            w_b.bitwise_or_(fine.bitwise_and_((1 << _FINE_BITS) - 1))
            r = (lam - integer).index_select(0, undecided)
            b.scatter_(0, undecided, _inversion(r, w_b))
        return a.add_(b)

    def _ptrs_tail(self, position: Tensor, lam: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        """PTRS rounds 1, 2, ... for the pooled rejected elements: yields (positions, counts) as they are accepted."""
        consts = _PtrsConstants(lam)
        for rnd in range(1, _PTRS_MAX_ROUNDS):
            w_u = self.words_at(self.round_keys(rnd, 0), position)
            w_v = self.words_at(self.round_keys(rnd, 1), position)
            k, accept = _ptrs_round(consts, w_u, w_v)
            done = accept.nonzero().squeeze(1)
            yield position.index_select(0, done), k.index_select(0, done)
            pending = accept.logical_not_().nonzero().squeeze(1)
            if len(pending) == 0:
                return
            position = position.index_select(0, pending)
            consts = consts.select(pending)
        yield position, torch.floor(consts.lam)  # rejected in every round: the mode


class _BlockContext:
    """A block of a :class:`_PoissonSampler`: its position, scratch space and (cached per stream) words."""

    def __init__(self, sampler: _PoissonSampler, block: Block, scratch: _Scratch) -> None:
        self.sampler, self.block, self.scratch = sampler, block, scratch
        r0, r1, c0, c1 = block
        self.start = r0 * sampler.count + c0  # a block is whole rows or part of one row: contiguous when flat
        self.shape = (r1 - r0, c1 - c0)

    def words(self, keys: Keys) -> Tensor:
        """The block's words of one stream (scratch: valid until the next call)."""
        r0, r1, c0, c1 = self.block
        words = _words_into(self.scratch.get("w", self.shape, torch.int32),
                            self.scratch.get("wt", self.shape, torch.int32),
                            _counters(self.sampler.count, self.sampler.device)[:, c0:c1],
                            (keys[0][r0:r1], keys[1][r0:r1]))  # fmt: skip
        return words


def _inversion(lam: Tensor, words: Tensor) -> Tensor:
    """X = min{k : U <= F(k)} = #{k >= 0 : F(k) < U}, counted step by step over the undecided elements.

    The CDF is accumulated as ``pmf_0 = exp(-lam)``, ``pmf_k = pmf_{k-1} * (lam / k)``, ``F(k) = F(k-1) + pmf_k``.
    """
    u = _unit(words)
    pmf = torch.neg(lam).exp_()
    cdf = pmf.clone()
    result = torch.zeros_like(lam)
    index: Tensor | None = None  # positions in ``result`` of the undecided elements (None: all)
    for k in range(1, _INVERSION_MAX_STEPS + 1):
        keep = torch.gt(u, cdf).nonzero().squeeze(1)
        if len(keep) == 0:
            break
        index = keep if index is None else index.index_select(0, keep)
        u, lam, pmf, cdf = (t.index_select(0, keep) for t in (u, lam, pmf, cdf))
        result.index_fill_(0, index, float(k))
        pmf.mul_(torch.div(lam, k))
        cdf.add_(pmf)
    return result


class _PtrsConstants:
    """Per-element PTRS constants (Hoermann 1993), in ``scratch`` if given."""

    _PARTS = ("lam", "b", "a", "two_a", "lam_shift", "inv_alpha", "v_limit")

    def __init__(self, lam: Tensor, scratch: _Scratch | None = None) -> None:
        f64 = torch.float64
        buf = _buffers(scratch, len(lam), lam.device, "c_")
        self.lam, self.log_lam_ = lam, None
        self.b = torch.sqrt(lam, out=buf("b", f64)).mul_(_c(2.53, f64)).add_(_c(0.931, f64))
        self.a = torch.mul(self.b, _c(0.02483, f64), out=buf("a", f64)).sub_(_c(0.059, f64))
        self.two_a = torch.mul(self.a, _c(2.0, f64), out=buf("two_a", f64))
        self.lam_shift = torch.add(lam, _c(0.43, f64), out=buf("lam_shift", f64))
        inv_alpha = torch.sub(self.b, _c(3.4, f64), out=buf("inv_alpha", f64)).reciprocal_()
        self.inv_alpha = inv_alpha.mul_(_c(1.1328, f64)).add_(_c(1.1239, f64))
        # v <= v_r  <=>  w_v <= floor(v_r 2**31 - 0.5), exactly (scaling by 2**31 and subtracting 0.5 are exact here).
        v_r = torch.sub(self.b, _c(2.0, f64), out=buf("v_r", f64)).reciprocal_()
        v_r.mul_(_c(-3.6224, f64)).add_(_c(0.9277, f64))
        v_r.mul_(_c(2.0**_WORD_BITS, f64)).sub_(_c(0.5, f64)).floor_()
        self.v_limit = buf("v_limit", torch.int32).copy_(v_r)

    def log_lam(self) -> Tensor:
        if self.log_lam_ is None:
            self.log_lam_ = torch.log(self.lam)
        return self.log_lam_

    def select(self, idx: Tensor) -> _PtrsConstants:
        """The constants of the elements ``idx`` (fresh tensors)."""
        out = object.__new__(_PtrsConstants)
        for name in self._PARTS:
            setattr(out, name, getattr(self, name).index_select(0, idx))
        out.log_lam_ = None if self.log_lam_ is None else self.log_lam_.index_select(0, idx)
        return out


def _ptrs_round(
    consts: _PtrsConstants, w_u: Tensor, w_v: Tensor, scratch: _Scratch | None = None
) -> tuple[Tensor, Tensor]:
    """One PTRS round: candidate counts k and whether they are accepted (in ``scratch`` if given).

    The squeeze accepts most candidates without logs. The exact test runs on the gathered rest when that is a small
    fraction, else on every element (cheaper than gathering); either way each element gets the same arithmetic.
    """
    f64 = torch.float64
    buf = _buffers(scratch, len(w_u), w_u.device, "r_")
    uu = buf("uu", f64)
    uu.copy_(w_u).mul_(_c(_WORD_SCALE, f64)).add_(_c(0.5 * _WORD_SCALE - 0.5, f64))  # U - 1/2, exact
    us = torch.abs(uu, out=buf("us", f64)).neg_().add_(_c(0.5, f64))
    k = torch.div(consts.two_a, us, out=buf("k", f64)).add_(consts.b).mul_(uu).add_(consts.lam_shift).floor_()
    accept = torch.ge(us, _c(0.07, f64), out=buf("accept", torch.bool))
    accept.logical_and_(torch.le(w_v, consts.v_limit, out=buf("squeeze", torch.bool)))
    n_slow = len(accept) - int(accept.sum())
    if n_slow == 0:
        return k, accept
    if 8 * n_slow >= len(accept):
        return k, accept.logical_or_(_ptrs_exact_accept(k, us, w_v, consts, buf))
    idx = accept.logical_not().nonzero().squeeze(1)
    sub = consts.select(idx)
    parts = (t.index_select(0, idx) for t in (k, us, w_v))
    accept.scatter_(0, idx, _ptrs_exact_accept(*parts, sub, _buffers(None, len(idx), w_u.device, "")))
    return k, accept


def _ptrs_exact_accept(k: Tensor, us: Tensor, w_v: Tensor, consts: _PtrsConstants, buf) -> Tensor:
    """PTRS acceptance by the exact test: not (k < 0 or (us < 0.013 and v > us)) and the log-density comparison."""
    f64, b8 = torch.float64, torch.bool
    v = buf("v", f64)
    v.copy_(w_v).add_(_c(0.5, f64)).mul_(_c(_WORD_SCALE, f64))
    reject = torch.lt(k, _c(0.0, f64), out=buf("reject", b8))
    tail = torch.lt(us, _c(0.013, f64), out=buf("tail", b8)).logical_and_(torch.gt(v, us, out=buf("above", b8)))
    reject.logical_or_(tail)
    # Accept iff log(V * inv_alpha / (a / us^2 + b)) <= k log(lam) - lam - log(k!).
    q = torch.mul(us, us, out=buf("q", f64))
    torch.div(consts.a, q, out=q).add_(consts.b)
    lhs = v.mul_(consts.inv_alpha).div_(q).log_()
    k_safe = torch.clamp(k, min=0.0, out=buf("k_safe", f64))
    rhs = torch.mul(consts.log_lam(), k_safe, out=q).sub_(consts.lam).sub_(_log_factorial(k_safe, buf))
    return torch.le(lhs, rhs, out=buf("exact", b8)).logical_and_(reject.logical_not_())
