"""Counter-based, stateless random numbers in plain torch integer and float64 arithmetic.

Every draw is a pure function of ``(per-sample 64-bit seed, stream, element counter)``, like Philox in Salmon et al.
(2011), "Parallel random numbers: as easy as 1, 2, 3". That makes a sample's noise independent of the batch it is in,
of the batch size and order and of the DataLoader worker count, and lets the whole batch be drawn in one vectorised
call. The mixing function is Chris Wellons' ``lowbias32`` (hash-prospector), a 32-bit avalanche hash applied twice
with per-sample keys. It runs in int64 tensors with every product kept below 2**63 in magnitude and masked to 32 bits.

Floating-point transforms (log, exp, sin/cos, log-factorial) are evaluated with fixed polynomials made of IEEE
``+ - * /`` and ``sqrt`` only, each a separate torch op so no fused multiply-add can change the rounding. CPU and CUDA
therefore produce bit-identical draws, which ``torch.log`` / ``torch.cos`` (different libm code per device) would not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

__all__ = ["bernoulli", "normal", "poisson", "sample_seeds", "uniform"]

_MASK32 = 0xFFFFFFFF
_MUL1 = 0x7FEB352D  # < 2**31, so x * _MUL1 < 2**63 for any 32-bit x
_MUL2 = 0x846CA68B - (1 << 32)  # same product modulo 2**32 as 0x846CA68B, but |x * _MUL2| < 2**63
_GOLDEN = 0x9E3779B9

# Domain-separation tags: draws of different kinds never share a stream key.
_TAG_SEED = 0x5EED5EED
_TAG_UNIFORM = 0x1
_TAG_NORMAL = 0x2
_TAG_BERNOULLI = 0x3
_TAG_POISSON_INVERSION = 0x4
_TAG_POISSON_PTRS = 0x5

_MAX_COUNTER = 1 << 32
_CPU_CHUNK = 1 << 18
_ACCELERATOR_CHUNK = 1 << 22
_INVERSION_MAX_STEPS = 100  # P(X >= 100 | rate < 10) < 1e-60
_PTRS_MIN_RATE = 10.0  # PTRS is valid for rate >= 10 (Hoermann 1993)
_PTRS_MAX_ROUNDS = 48  # a round rejects with probability <= 0.25 (at rate 10): all 48 fail with probability < 1e-28


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
    """lowbias32, in place, on an int64 tensor holding values in [0, 2**32)."""
    x ^= x >> 16
    x *= _MUL1
    x &= _MASK32
    x ^= x >> 15
    x *= _MUL2
    x &= _MASK32
    x ^= x >> 16
    return x


def _absorb(*words: int) -> int:
    """Hash a sequence of arbitrary Python ints (each reduced modulo 2**64) into one 32-bit key."""
    h = _mix32_int(_GOLDEN ^ len(words))
    for word in words:
        word &= (1 << 64) - 1
        h = _mix32_int(h ^ (word & _MASK32))
        h = _mix32_int(h ^ (word >> 32))
    return h


def _split64(values: Tensor) -> tuple[Tensor, Tensor]:
    """Low and high 32-bit halves of int64 values (two's complement), each in [0, 2**32)."""
    return values & _MASK32, (values >> 32) & _MASK32


def _join64(hi: Tensor, lo: Tensor) -> Tensor:
    """The int64 whose two's complement halves are ``hi`` and ``lo``, without signed overflow."""
    hi_signed = hi - ((hi >> 31) << 32)  # [-2**31, 2**31)
    return hi_signed * (1 << 32) + lo  # the product is at least -2**63, so exactly representable


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
    lo, hi = _split64(indices.to(torch.int64))
    a = _mix32_(lo ^ key_a)
    b = _mix32_(hi ^ key_b ^ a)  # for a fixed high half this is a bijection of the low half
    c = _mix32_(a ^ b ^ key_b)
    return _join64(b, c)


# ---------------------------------------------------------------------------------------------------------------------
# Device-independent float64 elementary functions (fixed polynomials; see the module docstring).

_LN2 = math.log(2.0)
_LN2_HI = 6.93147180369123816490e-01  # fdlibm split of ln 2: n * _LN2_HI is exact for |n| < 2**11
_LN2_LO = 1.90821492927058770002e-10
_SQRT2 = math.sqrt(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_ATANH_COEFFS = tuple(1.0 / (2 * k + 1) for k in range(12))  # atanh(s) = s sum s^2k / (2k + 1), s^2 <= 0.0295
_EXP_COEFFS = tuple(1.0 / math.factorial(k) for k in range(14))  # |r| <= ln(2) / 2
_SIN_COEFFS = tuple((-1) ** k / math.factorial(2 * k + 1) for k in range(9))  # |t| <= pi / 4
_COS_COEFFS = tuple((-1) ** k / math.factorial(2 * k) for k in range(9))
_LOG_FACTORIAL_TABLE = tuple(math.lgamma(k + 1.0) for k in range(16))
# Stirling series of log Gamma(x): 1/(12x) - 1/(360x^3) + 1/(1260x^5) - 1/(1680x^7) + 1/(1188x^9), used for x >= 17.
_STIRLING_COEFFS = (1.0 / 12.0, -1.0 / 360.0, 1.0 / 1260.0, -1.0 / 1680.0, 1.0 / 1188.0)


def _horner(x: Tensor, coeffs: tuple[float, ...]) -> Tensor:
    """sum_k coeffs[k] * x**k, as separate in-place multiply and add ops."""
    acc = torch.full_like(x, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        acc.mul_(x).add_(c)
    return acc


def _log(x: Tensor) -> Tensor:
    """Natural log of positive finite float64 values (absolute error ~1e-16)."""
    m, e = torch.frexp(x)  # x = m * 2**e with m in [0.5, 1), exact
    s = m.mul_(_SQRT2).sub_(1.0)  # log x = (e - 1/2) ln 2 + log(m sqrt 2); f = m sqrt 2 - 1 is exact (Sterbenz)
    s.div_(s + 2.0)  # s = f / (2 + f) in [-0.172, 0.172], log(1 + f) = 2 atanh(s)
    acc = _horner(s * s, _ATANH_COEFFS).mul_(s).mul_(2.0)
    return acc.add_(e.to(torch.float64).sub_(0.5).mul_(_LN2))


def _exp(x: Tensor) -> Tensor:
    """exp of float64 values in [-700, 700] (relative error ~1e-16)."""
    n = (x * (1.0 / _LN2)).round_()
    r = (n * -_LN2_HI).add_(x).sub_(n * _LN2_LO)  # |r| <= ln(2) / 2
    scale = n.to(torch.int64).add_(1023).bitwise_left_shift_(52).view(torch.float64)  # 2**n from its bit pattern
    return _horner(r, _EXP_COEFFS).mul_(scale)


def _sincos_2pi(u: Tensor) -> tuple[Tensor, Tensor]:
    """(sin 2 pi u, cos 2 pi u) for float64 u in [0, 1]."""
    q = (u * 4.0).round_()
    t = (q * -0.25).add_(u).mul_(2.0 * math.pi)  # u - q / 4 is exact; t in [-pi/4, pi/4]
    t2 = t * t
    sin_t = _horner(t2, _SIN_COEFFS).mul_(t)
    cos_t = _horner(t2, _COS_COEFFS)
    # 2 pi u = t + q pi / 2: odd quadrants swap sin and cos, and the signs follow the quadrant.
    quadrant = q.to(torch.int64).bitwise_and_(3)
    odd = (quadrant & 1).bool()
    sin = torch.where(odd, cos_t, sin_t).mul_((quadrant >= 2).to(torch.float64).mul_(-2.0).add_(1.0))
    cos = torch.where(odd, sin_t, cos_t).mul_(((quadrant + 1) & 2).to(torch.float64).mul_(-1.0).add_(1.0))
    return sin, cos


def _log_factorial(k: Tensor) -> Tensor:
    """log(k!) for float64 integer values k >= 0 (table below 16, Stirling series above)."""
    table = torch.tensor(_LOG_FACTORIAL_TABLE, dtype=torch.float64, device=k.device)
    size = len(_LOG_FACTORIAL_TABLE)
    x = torch.clamp(k, min=float(size)) + 1.0
    inv = 1.0 / x
    series = _horner(inv * inv, _STIRLING_COEFFS) * inv
    stirling = (x - 0.5) * _log(x) - x + _HALF_LOG_2PI + series
    small = table.index_select(0, torch.clamp(k, 0, size - 1).to(torch.int64))
    return torch.where(k < size, small, stirling)


# ---------------------------------------------------------------------------------------------------------------------
# Counter-based uniforms.

Keys = tuple[Tensor, Tensor]


def _keys(seeds: Tensor, stream_key: int) -> Keys:
    """Two 32-bit keys per sample; seed -> keys is a bijection for a fixed stream key."""
    lo, hi = _split64(seeds)
    k0 = _mix32_(lo ^ _mix32_(hi ^ stream_key))
    k1 = _mix32_(hi ^ k0 ^ _mix32_int(stream_key ^ _GOLDEN))
    return k0, k1


def _chunks(total: int, device: torch.device) -> Iterator[tuple[int, int]]:
    """Flat element ranges: small on CPU so temporaries stay in cache; the draws do not depend on the chunking."""
    size = _CPU_CHUNK if device.type == "cpu" else _ACCELERATOR_CHUNK
    for start in range(0, total, size):
        yield start, min(start + size, total)


def _positions(start: int, end: int, per_sample: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """(sample row, counter within the sample) of flat elements start..end-1."""
    flat = torch.arange(start, end, device=device, dtype=torch.int64)
    rows = flat // per_sample
    return rows, flat.sub_(rows * per_sample)


def _unit_at(keys: Keys, rows: Tensor, counters: Tensor) -> Tensor:
    """Float64 uniforms (w + 0.5) / 2**32, exact and in (0, 1), where w = two keyed lowbias32 rounds of the counter."""
    words = _mix32_(counters ^ keys[0].index_select(0, rows))
    words.add_(keys[1].index_select(0, rows)).bitwise_and_(_MASK32)
    return _mix32_(words).to(torch.float64).add_(0.5).mul_(2.0**-32)


def _check_seeds(seeds: Tensor) -> None:
    if not isinstance(seeds, Tensor) or seeds.dtype != torch.int64 or seeds.dim() != 1:
        raise TypeError("seeds must be a 1-D int64 tensor (one seed per sample)")


def _numel(shape: tuple[int, ...]) -> int:
    count = math.prod(shape)
    if count >= _MAX_COUNTER:
        raise ValueError(f"at most 2**32 - 1 draws per sample, got shape {shape}")
    return count


def _uniform64(seeds: Tensor, count: int, stream_key: int) -> Tensor:
    """(N, count) float64 uniforms on the seeds' device."""
    keys = _keys(seeds, stream_key)
    out = torch.empty(len(seeds) * count, dtype=torch.float64, device=seeds.device)
    for start, end in _chunks(len(out), seeds.device):
        out[start:end] = _unit_at(keys, *_positions(start, end, count, seeds.device))
    return out.view(len(seeds), count)


def _compute_device(device: torch.device) -> torch.device:
    """Where to run the float64 arithmetic: MPS has no float64, so its draws are made on the CPU (same values)."""
    return torch.device("cpu") if device.type == "mps" else device


def _prepare(
    seeds: Tensor, shape: tuple[int, ...], device: torch.device | str | None
) -> tuple[Tensor, int, torch.device]:
    """Seeds on the compute device, draws per sample, and the output device."""
    _check_seeds(seeds)
    target = seeds.device if device is None else torch.device(device)
    return seeds.to(_compute_device(target)), _numel(tuple(shape)), target


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
        dtype: ``torch.float64``: (w + 0.5) / 2**32 for a random 32-bit word w. ``torch.float32``: that value
            rounded down to float32 (at least 24 random bits, never 0 or 1).
    """
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"uniform supports float32 and float64, got {dtype}")
    seeds, count, target = _prepare(seeds, shape, device)
    u = _uniform64(seeds, count, _absorb(_TAG_UNIFORM, stream))
    if dtype == torch.float32:
        u = _round_down_to_float32(u)
    return u.reshape(len(seeds), *shape).to(target)


def _round_down_to_float32(u: Tensor) -> Tensor:
    """float64 -> float32 rounding toward zero, so values just below 1 never become 1.0 (as round-to-nearest would)."""
    f = u.to(torch.float32)
    return torch.where(f.to(torch.float64) > u, torch.nextafter(f, torch.zeros_like(f)), f)


def normal(
    seeds: Tensor,
    shape: tuple[int, ...],
    stream: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard normal draws by Box-Muller (Box & Muller 1958) from two uniform streams.

    Element ``2j`` is ``sqrt(-2 log u1_j) cos(2 pi u2_j)`` and element ``2j + 1`` the matching sine, so one pair of
    uniforms gives two independent normals. Computed in float64, then cast to ``dtype``.
    """
    seeds, count, target = _prepare(seeds, shape, device)
    pairs = (count + 1) // 2
    keys1 = _keys(seeds, _absorb(_TAG_NORMAL, stream, 0))
    keys2 = _keys(seeds, _absorb(_TAG_NORMAL, stream, 1))
    out = torch.empty(len(seeds) * pairs, 2, dtype=dtype, device=seeds.device)
    for start, end in _chunks(len(out), seeds.device):
        rows, counters = _positions(start, end, pairs, seeds.device)
        radius = _log(_unit_at(keys1, rows, counters)).mul_(-2.0).sqrt_()
        sin, cos = _sincos_2pi(_unit_at(keys2, rows, counters))
        out[start:end, 0] = cos.mul_(radius)
        out[start:end, 1] = sin.mul_(radius)
    return out.view(len(seeds), 2 * pairs)[:, :count].reshape(len(seeds), *shape).to(target)


def bernoulli(
    p: float | Tensor,
    seeds: Tensor,
    shape: tuple[int, ...],
    stream: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """1 with probability ``p`` (a number or a tensor broadcastable to (N, *shape)), else 0."""
    seeds, count, target = _prepare(seeds, shape, device)
    u = _uniform64(seeds, count, _absorb(_TAG_BERNOULLI, stream)).reshape(len(seeds), *shape)
    if isinstance(p, Tensor):
        p = p.to(device=seeds.device, dtype=torch.float64)
    return (u < p).to(device=target, dtype=dtype)


def poisson(rate: Tensor, seeds: Tensor, stream: int = 0) -> Tensor:
    """Poisson draws with per-element rates, exact in distribution.

    Rates below 10 use sequential-search inversion of the CDF (at most 100 vectorised steps; the cap, which then
    returns 100, is reached with probability < 1e-60). Rates of 10 and more use Hoermann's transformed rejection with
    squeeze, PTRS (Hoermann 1993, "The transformed rejection method for generating Poisson random variables"), in at
    most 48 vectorised rounds, each with its own pair of independent streams; only still-rejected elements take part
    in the next round. An element rejected in all 48 rounds (probability < 1e-28) falls back to ``floor(rate)``, the
    mode. Every value depends only on its sample's seed, the stream and its position, never on other elements.

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
    count = _numel(tuple(rate.shape[1:]))
    lam = rate.detach().reshape(-1).to(device=_compute_device(rate.device), dtype=torch.float64)
    if not bool(torch.isfinite(lam).all()) or bool((lam < 0).any()):
        raise ValueError("Poisson rates must be finite and non-negative")
    seeds = seeds.to(lam.device)
    inversion_keys = _keys(seeds, _absorb(_TAG_POISSON_INVERSION, stream))
    ptrs_keys: dict[tuple[int, int], Keys] = {}

    def round_keys(rnd: int, which: int) -> Keys:
        if (rnd, which) not in ptrs_keys:
            ptrs_keys[rnd, which] = _keys(seeds, _absorb(_TAG_POISSON_PTRS, stream, rnd, which))
        return ptrs_keys[rnd, which]

    out = torch.empty_like(lam)
    for start, end in _chunks(len(lam), lam.device):
        rows, counters = _positions(start, end, count, lam.device)
        chunk = lam[start:end]
        small = chunk < _PTRS_MIN_RATE
        if bool(small.all()):
            out[start:end] = _inversion(chunk, inversion_keys, rows, counters)
            continue
        if not bool(small.any()):
            out[start:end] = _ptrs(chunk, round_keys, rows, counters)
            continue
        result = torch.empty_like(chunk)
        for idx, sampler, keys in (
            (torch.nonzero(small).squeeze(1), _inversion, inversion_keys),
            (torch.nonzero(~small).squeeze(1), _ptrs, round_keys),
        ):
            values = sampler(_take(chunk, idx), keys, _take(rows, idx), _take(counters, idx))
            result.index_copy_(0, idx, values)
        out[start:end] = result
    return out.view(rate.shape).to(device=rate.device, dtype=rate.dtype)


def _take(values: Tensor, idx: Tensor) -> Tensor:
    return values.index_select(0, idx)


def _inversion(lam: Tensor, keys: Keys, rows: Tensor, counters: Tensor) -> Tensor:
    """X = min{k : U <= F(k)} = #{k >= 0 : F(k) < U}, counted step by step over the undecided elements."""
    u = _unit_at(keys, rows, counters)
    result = torch.empty_like(lam)
    position = torch.arange(len(lam), device=lam.device)
    count = torch.zeros_like(lam)
    pmf = _exp(-lam)
    cdf = pmf.clone()
    for k in range(1, _INVERSION_MAX_STEPS + 1):
        undecided = u > cdf
        remaining = int(undecided.sum())
        if remaining == 0:
            break
        count.add_(undecided)
        if 2 * remaining < len(u):  # compact: park the decided counts, continue with the rest
            result.index_copy_(0, position, count)
            keep = torch.nonzero(undecided).squeeze(1)
            position, u, lam, pmf, cdf, count = (_take(t, keep) for t in (position, u, lam, pmf, cdf, count))
        pmf.mul_(lam).div_(float(k))
        cdf.add_(pmf)
    return result.index_copy_(0, position, count)


def _ptrs(lam: Tensor, round_keys: Callable[[int, int], Keys], rows: Tensor, counters: Tensor) -> Tensor:
    """Hoermann's PTRS for rates >= 10 (constants from the paper); the squeeze accepts most draws without logs."""
    result = torch.floor(lam)  # fallback if every round rejects
    position = torch.arange(len(lam), device=lam.device)
    b = torch.sqrt(lam).mul_(2.53).add_(0.931)
    a = (b * 0.02483).sub_(0.059)
    v_r = torch.reciprocal(b - 2.0).mul_(-3.6224).add_(0.9277)
    for rnd in range(_PTRS_MAX_ROUNDS):
        uu = _unit_at(round_keys(rnd, 0), rows, counters).sub_(0.5)
        v = _unit_at(round_keys(rnd, 1), rows, counters)
        us = torch.abs(uu).neg_().add_(0.5)
        k = (a * 2.0).div_(us).add_(b).mul_(uu).add_(lam).add_(0.43).floor_()
        accept = (us >= 0.07) & (v <= v_r)
        slow = torch.nonzero(~accept).squeeze(1)
        if len(slow):
            s_k, s_us, s_v, s_lam, s_a, s_b = (_take(t, slow) for t in (k, us, v, lam, a, b))
            reject = (s_k < 0) | ((s_us < 0.013) & (s_v > s_us))
            inv_alpha = torch.reciprocal(s_b - 3.4).mul_(1.1328).add_(1.1239)
            # Accept iff log(V * inv_alpha / (a / us^2 + b)) <= k log(lam) - lam - log(k!).
            lhs = _log(s_v.mul_(inv_alpha).div_(s_a.div_(s_us * s_us).add_(s_b)))
            k_safe = torch.clamp(s_k, min=0.0)
            rhs = (k_safe * _log(s_lam)).sub_(s_lam).sub_(_log_factorial(k_safe))
            accept.index_copy_(0, slow, ~reject & (lhs <= rhs))
        done = torch.nonzero(accept).squeeze(1)
        result.index_copy_(0, _take(position, done), _take(k, done))
        pending = torch.nonzero(~accept).squeeze(1)
        if len(pending) == 0:
            break
        position, rows, counters, lam, a, b, v_r = (
            _take(t, pending) for t in (position, rows, counters, lam, a, b, v_r)
        )
    return result
