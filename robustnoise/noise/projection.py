"""Exact projection of a noise direction onto the clipped l2 sphere (clipping-aware rescaling).

Rusak et al. 2020, §3.2 (footnote 3) rescale every noise sample so that the *clipped* perturbation has l2 norm ε; the
algorithm is from Rauber & Bethge 2020, "Fast differentiable clipping-aware normalization and rescaling"
(arXiv 2007.07677).

Derivation used here. For one image with pixels x_i ∈ [a, b] and direction δ_i, pixel i has headroom
s_i = b − x_i (δ_i > 0) or x_i − a (δ_i < 0) and saturates at the scale r_i = s_i / |δ_i|. With the pixels sorted by
r, the squared clipped norm at scale η ∈ [r_(j−1), r_(j)] is

    g(η) = S_j + η² · M_j,   S_j = Σ_{l<j} s_(l)²  (saturated),   M_j = Σ_{l≥j} δ_(l)²  (still linear),

so g is continuous, non-decreasing and piecewise quadratic in η (piecewise linear in η²). Evaluating g at the sorted
breakpoints locates the segment containing ε², where η = sqrt((ε² − S_j) / M_j) is solved in closed form.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["clipping_aware_scale", "l2_norm", "project_to_sphere"]


def l2_norm(t: Tensor) -> Tensor:
    """Per-image l2 norm.

    Args:
        t: Tensor of shape (N, ...); everything after the batch dimension is flattened.

    Returns:
        Tensor of shape (N,).
    """
    return torch.linalg.vector_norm(t.flatten(1), dim=1)


def _safe_sqrt(q: Tensor) -> Tensor:
    # sqrt has an infinite derivative at 0; masking keeps gradients finite where q <= 0 (result 0 there).
    pos = q > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, q, torch.ones_like(q))), torch.zeros_like(q))


def clipping_aware_scale(x: Tensor, delta: Tensor, eps: float | Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Exact per-image scale η ≥ 0 with ``||clip(x + η·delta, a, b) − x||₂ = eps`` (Rauber & Bethge 2020).

    Non-iterative: sorts the per-pixel saturation points and inverts the piecewise-quadratic clipped norm (see the
    module docstring). Vectorised over the batch and differentiable w.r.t. ``delta`` and ``eps``; the segment choice
    itself is discrete. Used by Rusak et al. 2020, §3.2, to give every noise sample the clipped l2 norm ε.

    Edge cases:
        * Pixels with ``delta_i == 0`` never contribute to the norm and are ignored (as are entries below ~1e-19
          (float32) / ~1e-154 (float64) of the row's largest |delta_i|, whose squares underflow).
        * An unreachable ``eps`` (larger than the norm with every pixel saturated) returns the smallest η that
          saturates every pixel, i.e. the maximal achievable norm.
        * An all-zero ``delta`` row returns η = 0 (no direction to scale).
        * ``eps <= 0`` returns η = 0.

    Args:
        x: Clean images of shape (N, ...), values in [a, b].
        delta: Perturbation directions, same shape as ``x``.
        eps: Target clipped l2 norm: a scalar, a one-element tensor or a per-image tensor of shape (N,).
        a: Lower bound of the valid pixel range.
        b: Upper bound of the valid pixel range.

    Returns:
        η of shape (N, 1, ..., 1) (broadcastable to ``x``), in ``x``'s dtype.
    """
    if x.shape != delta.shape:
        raise ValueError(f"x and delta must have the same shape, got {tuple(x.shape)} and {tuple(delta.shape)}")
    if x.dim() < 2:
        raise ValueError(f"expected a batch of shape (N, ...) with at least 2 dims, got {tuple(x.shape)}")
    n = x.shape[0]
    dtype = x.dtype
    xf = x.flatten(1)
    df = delta.flatten(1).to(dtype)

    # eta is homogeneous of degree -1 in delta, so scaling delta to max |delta_i| = 1 and dividing eta by the same
    # constant gives identical values and gradients; it only protects delta**2 from under/overflow.
    scale = df.detach().abs().amax(dim=1, keepdim=True)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    d = df / scale

    d2 = d * d
    active = d2 > 0
    headroom = torch.where(d >= 0, b - xf, xf - a)
    s = torch.where(active, headroom, torch.zeros_like(headroom))
    # Inactive pixels get r = 0 and s = 0: a breakpoint at 0 that adds neither value nor slope.
    r = torch.where(active, s / torch.where(active, d.abs(), torch.ones_like(d)), torch.zeros_like(s))

    r_sorted, order = torch.sort(r, dim=1)
    s2_sorted = torch.gather(s * s, 1, order)
    d2_sorted = torch.gather(d2, 1, order)

    sat_incl = torch.cumsum(s2_sorted, dim=1)  # S_{j+1}
    lin_incl = torch.flip(torch.cumsum(torch.flip(d2_sorted, [1]), dim=1), [1])  # M_j as a suffix sum: no cancellation
    sat_excl = sat_incl - s2_sorted  # S_j
    lin_excl = lin_incl - d2_sorted  # M_{j+1}
    # g(r_(j)) = S_{j+1} + r_(j)² M_{j+1}; multiplied as (r·M)·r so the bounded product cannot overflow midway.
    g_at_breaks = sat_incl + (r_sorted * lin_excl) * r_sorted

    eps_t = torch.as_tensor(eps, dtype=dtype, device=x.device)
    if eps_t.numel() == 1:
        eps_t = eps_t.reshape(1).expand(n)
    elif eps_t.shape != (n,):
        raise ValueError(f"eps must be a scalar or have shape ({n},), got {tuple(eps_t.shape)}")
    eps2 = (eps_t * eps_t).unsqueeze(1)

    num_below = (g_at_breaks < eps2).sum(dim=1, keepdim=True)
    unreachable = num_below == xf.shape[1]
    j = num_below.clamp(max=xf.shape[1] - 1)
    sat_j = torch.gather(sat_excl, 1, j)
    lin_j = torch.gather(lin_incl, 1, j)
    lin_j = torch.where(lin_j > 0, lin_j, torch.ones_like(lin_j))
    eta_segment = _safe_sqrt((eps2 - sat_j) / lin_j)
    eta_all_saturated = r_sorted[:, -1:]
    eta = torch.where(unreachable, eta_all_saturated, eta_segment)
    eta = torch.where(eps_t.unsqueeze(1) > 0, eta, torch.zeros_like(eta)) / scale

    finfo = torch.finfo(dtype)
    # An astronomically large eta would overflow to inf and turn 0·inf into NaN in x + eta·delta.
    eta = eta.clamp(max=finfo.max)
    return eta.reshape((n,) + (1,) * (x.dim() - 1))


def project_to_sphere(x: Tensor, delta: Tensor, eps: float | Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Perturbed images ``clip(x + η·delta, a, b)`` whose clipped perturbation has l2 norm ``eps`` (Rusak et al. §3.2).

    Args:
        x: Clean images of shape (N, ...), values in [a, b].
        delta: Perturbation directions, same shape as ``x``.
        eps: Target clipped l2 norm (scalar or shape (N,)); see :func:`clipping_aware_scale` for edge cases.
        a: Lower bound of the valid pixel range.
        b: Upper bound of the valid pixel range.

    Returns:
        The perturbed images, same shape as ``x``; differentiable w.r.t. ``delta``.
    """
    eta = clipping_aware_scale(x, delta, eps, a, b)
    return torch.clamp(x + eta * delta.to(x.dtype), a, b)
