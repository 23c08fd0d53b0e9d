"""Exact projection of a noise direction onto the clipped l2 sphere (clipping-aware rescaling).

Rusak et al. 2020, §3.2 (footnote 3) rescale every noise sample so that the *clipped* perturbation has l2 norm ε; the
problem and its closed form per segment are from Rauber & Bethge 2020, "Fast differentiable clipping-aware
normalization and rescaling" (arXiv 2007.07677), who locate the segment by sorting.

Derivation used here. For one image with pixels x_i ∈ [a, b] and direction δ_i, pixel i has headroom
s_i = b − x_i (δ_i > 0) or x_i − a (δ_i < 0) and saturates at the scale r_i = s_i / |δ_i|. In t = η² the squared
clipped norm is

    g(t) = S(t) + t · M(t),   S(t) = Σ_{r_i² ≤ t} s_i²  (saturated),   M(t) = Σ_{r_i² > t} δ_i²  (still linear),

continuous, non-decreasing, piecewise linear and concave (its slope M(t) only drops). So Newton's method for
g(t) = ε² started at t = 0 climbs monotonically from below and stops exactly: each step solves the linear piece of
the current saturated set, t ← (ε² − S(t)) / M(t), and the set only grows, so the iteration ends (in at most one step
per pixel; 3–8 on noise images) when the set no longer changes, at the same segment and closed form
η = sqrt((ε² − S) / M) as the sort. No sort: a few masked sums instead, and the backward pass only sees the closed
form.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["clipping_aware_scale", "l2_norm", "project_to_sphere"]


def l2_norm(t: Tensor) -> Tensor:
    """Per-image l2 norm (N,) of a tensor (N, ...)."""
    return torch.linalg.vector_norm(t.flatten(1), dim=1)


def _safe_sqrt(q: Tensor) -> Tensor:
    # sqrt has an infinite derivative at 0; masking keeps gradients finite where q <= 0 (result 0 there).
    pos = q > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, q, torch.ones_like(q))), torch.zeros_like(q))


def clipping_aware_scale(x: Tensor, delta: Tensor, eps: float | Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Exact per-image scale η ≥ 0 with ``||clip(x + η·delta, a, b) − x||₂ = eps`` (Rauber & Bethge 2020).

    Finds the saturated set by Newton's method on the piecewise-linear, concave clipped norm in η² (see the module
    docstring), then solves its segment in closed form; same result as Rauber & Bethge's sort-based algorithm (to
    float rounding). Vectorised over the batch and differentiable w.r.t. ``delta`` and ``eps``; the segment choice
    itself is discrete. Used by Rusak et al. 2020, §3.2, to give every noise sample the clipped l2 norm ε.

    Edge cases:
        * Pixels with ``delta_i == 0`` never contribute to the norm and are ignored (as are entries below ~1e-19
          (float32) / ~1e-154 (float64) of the row's largest |delta_i|, whose squares underflow).
        * An unreachable ``eps`` (larger than the norm with every pixel saturated) returns the smallest η that
          saturates every pixel, i.e. the maximal achievable norm.
        * An all-zero ``delta`` row returns η = 0 (no direction to scale).
        * ``eps <= 0`` returns η = 0.

    ``x``: clean images (N, ...) in [a, b]; ``delta``: directions shaped like ``x``; ``eps``: a scalar, a one-element
    tensor or per-image (N,). Returns η of shape (N, 1, ..., 1), in ``x``'s dtype.
    """
    if x.shape != delta.shape:
        raise ValueError(f"x and delta must have the same shape, got {tuple(x.shape)} and {tuple(delta.shape)}")
    if x.dim() < 2:
        raise ValueError(f"expected a batch of shape (N, ...) with at least 2 dims, got {tuple(x.shape)}")
    n, dtype, xf = x.shape[0], x.dtype, x.flatten(1)
    df = delta.flatten(1).to(dtype)

    # eta is homogeneous of degree -1 in delta, so scaling delta to max |delta_i| = 1 and dividing eta by the same
    # constant gives identical values and gradients; it only protects delta**2 from under/overflow.
    scale = df.detach().abs().amax(dim=1, keepdim=True)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    d = df / scale

    eps_t = torch.as_tensor(eps, dtype=dtype, device=x.device)
    if eps_t.numel() == 1:
        eps_t = eps_t.reshape(1).expand(n)
    elif eps_t.shape != (n,):
        raise ValueError(f"eps must be a scalar or have shape ({n},), got {tuple(eps_t.shape)}")
    eps2 = (eps_t * eps_t).unsqueeze(1)

    # Elementwise float arithmetic instead of boolean masks and torch.where: several times faster on CPU.
    sign = torch.sign(d.detach())
    s = sign.abs() * (0.5 * (b - a)) + sign * (0.5 * (a + b) - xf)  # headroom b - x or x - a; 0 where delta is 0
    s2 = s * s
    unreachable = s2.sum(dim=1, keepdim=True) < eps2  # even with every pixel saturated

    with torch.no_grad():
        d2 = d * d
        t = torch.zeros_like(eps2)
        for _ in range(xf.shape[1] + 1):  # the saturated set only grows: at most one step per pixel
            linear = torch.sign(s2 - t * d2).clamp_(min=0)  # 1 while r_i² > t, else 0 (and 0 where delta is 0)
            lin = (d2 * linear).sum(dim=1, keepdim=True)
            step = (eps2 - (s2 * (1 - linear)).sum(dim=1, keepdim=True)) / lin
            step = torch.where((lin > 0) & ~unreachable, step, t)
            if not bool((step > t).any()):
                break
            t = torch.maximum(t, step)

    lin = (d.square() * linear).sum(dim=1, keepdim=True)
    saturated = unreachable | (lin == 0)  # eps at or beyond the norm with every pixel saturated (or delta == 0)
    eta = _safe_sqrt((eps2 - (s2 * (1 - linear)).sum(dim=1, keepdim=True)) / torch.where(saturated, 1.0, lin))
    if bool(saturated.any()):  # the smallest eta saturating every pixel: max_i r_i (0 for an all-zero delta)
        r = torch.where(sign != 0, s / torch.where(sign != 0, d.abs(), torch.ones_like(d)), torch.zeros_like(s))
        eta = torch.where(saturated, r.amax(dim=1, keepdim=True), eta)
    eta = torch.where(eps_t.unsqueeze(1) > 0, eta, torch.zeros_like(eta)) / scale

    # An astronomically large eta would overflow to inf and turn 0·inf into NaN in x + eta·delta.
    return eta.clamp(max=torch.finfo(dtype).max).reshape((n,) + (1,) * (x.dim() - 1))


def project_to_sphere(x: Tensor, delta: Tensor, eps: float | Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Perturbed images ``clip(x + η·delta, a, b)`` whose clipped perturbation has l2 norm ``eps`` (Rusak et al. §3.2),
    differentiable w.r.t. ``delta``; arguments and edge cases as :func:`clipping_aware_scale`."""
    eta = clipping_aware_scale(x, delta, eps, a, b)
    return torch.clamp(x + eta * delta.to(x.dtype), a, b)
