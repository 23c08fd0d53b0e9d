"""Exact projection onto the clipped l2 sphere (Rusak et al. 2020, §3.2 footnote 3; Rauber & Bethge 2020, arXiv
2007.07677, who sort). Pixel i (headroom s_i, direction δ_i) saturates at scale r_i = s_i / |δ_i|; in t = η² the squared
clipped norm g(t) = Σ_{r_i² ≤ t} s_i² + t · Σ_{r_i² > t} δ_i² is piecewise linear, non-decreasing and concave, so
Newton's method for g(t) = ε² from t = 0 stops exactly on the sort's segment (3–8 steps) without sorting."""

from __future__ import annotations

import torch
from torch import Tensor


def l2_norm(t: Tensor) -> Tensor:
    """Per-image l2 norm (N,) of a tensor (N, ...)."""
    return torch.linalg.vector_norm(t.flatten(1), dim=1)


def clipping_aware_scale(x: Tensor, delta: Tensor, eps: float | Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Exact per-image scale η ≥ 0 (N, 1, ..., 1) with ``||clip(x + η·delta, a, b) − x||₂ = eps`` (Rauber & Bethge),
    differentiable; ``eps`` scalar or (N,). An unreachable ``eps`` gives the smallest η saturating every pixel; an
    all-zero ``delta`` row or ``eps <= 0`` gives η = 0."""
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
    q = (eps2 - (s2 * (1 - linear)).sum(dim=1, keepdim=True)) / torch.where(saturated, 1.0, lin)
    # sqrt has an infinite derivative at 0: masked, gradients stay finite where q <= 0 (eta 0 there)
    eta = torch.where(q > 0, torch.sqrt(torch.where(q > 0, q, torch.ones_like(q))), torch.zeros_like(q))
    if bool(saturated.any()):  # the smallest eta saturating every pixel: max_i r_i (0 for an all-zero delta)
        r = torch.where(sign != 0, s / torch.where(sign != 0, d.abs(), torch.ones_like(d)), torch.zeros_like(s))
        eta = torch.where(saturated, r.amax(dim=1, keepdim=True), eta)
    eta = torch.where(eps_t.unsqueeze(1) > 0, eta, torch.zeros_like(eta)) / scale

    # An astronomically large eta would overflow to inf and turn 0·inf into NaN in x + eta·delta.
    return eta.clamp(max=torch.finfo(dtype).max).reshape((n,) + (1,) * (x.dim() - 1))


def project_to_sphere(x: Tensor, delta: Tensor, eps: float | Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """``clip(x + η·delta, a, b)`` whose clipped perturbation has l2 norm ``eps`` (Rusak et al. §3.2)."""
    eta = clipping_aware_scale(x, delta, eps, a, b)
    return torch.clamp(x + eta * delta.to(x.dtype), a, b)
