"""The median perturbation size eps* (Rusak et al. 2020, §3.3, Table 2).

For each test image and a noise direction n (unit l2), eps is the clipped l2 size ``||clip(x + eta n, 0, 1) - x||``
of the smallest step ``eta`` along n that changes the classifier's decision; eps* is the median over the test set.
Images that no step along n can flip count as infinity (paper footnote 5; the reference code stores the sentinel
C*H*W instead), images that are already misclassified count as 0. The median is the lower median (as the
reference's ``torch.median``), well defined with infinite entries.

Search. The reference tests 11 steps of a 1.8-geometric grid (eta = 0, 1, 1.8, ..., 1.8^9) and then moves by 40
halving steps: 51 forward passes per image. Here, per batch: one pass on the clean images, then the same 11-point
1.8-geometric grid but anchored at ``eta_max``, the step that saturates every pixel (so it adapts to the image size
and never tests beyond saturation; an image whose decision survives the whole grid is counted as never flipped),
then a bisection on log(eta) inside the bracket of the first grid point that flips; every pass halves the bracket of
the images whose bracket is still too wide. ``rel_tol`` bounds the relative width of the final bracket in eta:
1 + 11 + 16 = 28 passes per image for the default 1e-5 (a few more for images that flip already at the grid's first
point, the bracket then reaching down to 2^-40 of eta_max), about float32 resolution for the norms. Like the
reference, the value recorded is the clipped norm at the misclassified end of the bracket.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from robustnoise.corruptions import rng
from robustnoise.noise.projection import l2_norm

DIRECTIONS = ("gaussian", "uniform", "generator")
_FLOOR = 40 * math.log(2.0)  # search down to 2^-40 of the saturating step when the whole grid flips


def saturating_step(x: Tensor, direction: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Per image, the smallest eta at which every pixel with a non-zero direction is clipped: (N,)."""
    headroom = torch.where(direction >= 0, b - x, x - a)
    steps = torch.where(direction != 0, headroom / direction.abs().clamp_min(1e-30), torch.zeros_like(x))
    return steps.flatten(1).amax(dim=1)


def random_directions(x: Tensor, kind: str, seeds: Tensor) -> Tensor:
    """Unit-l2 Gaussian (N(0, I)) or uniform (U(-1, 1)^D) directions, one per image, from per-image seeds."""
    shape = tuple(x.shape[1:])
    if kind == "gaussian":
        d = rng.normal(seeds, shape, device=x.device, dtype=x.dtype)
    elif kind == "uniform":
        d = rng.uniform(seeds, shape, device=x.device, dtype=x.dtype) * 2 - 1
    else:
        raise ValueError(f"unknown random direction {kind!r}: use gaussian or uniform")
    return d / l2_norm(d).view(-1, *([1] * (x.dim() - 1))).clamp_min(1e-30)


@torch.no_grad()
def minimal_perturbation(
    model: nn.Module | Callable[[Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    direction: Tensor,
    rel_tol: float = 1e-5,
    coarse_steps: int = 11,
    coarse_ratio: float = 1.8,
) -> tuple[Tensor, float]:
    """Per-image eps along ``direction`` (any scale; it is normalised), and the mean forward passes per image.

    Returns eps of shape (N,): 0 where the clean image is already misclassified, ``inf`` where no grid step up to
    full saturation changes the label.
    """
    view = (-1, *([1] * (x.dim() - 1)))
    n_hat = direction / l2_norm(direction).view(view).clamp_min(1e-30)

    def flips(eta: Tensor) -> Tensor:
        return model((x + eta.view(view) * n_hat).clamp(0, 1)).argmax(dim=1) != y

    wrong = model(x).argmax(dim=1) != y
    eta_max = saturating_step(x, n_hat).clamp_min(1e-12)
    grid = [eta_max * coarse_ratio ** (k - coarse_steps + 1) for k in range(coarse_steps)]
    found = torch.zeros_like(wrong)
    lo = torch.log(eta_max) - _FLOOR  # below the grid: the bracket when its first point already flips
    hi = torch.log(eta_max)
    for k, eta in enumerate(grid):  # the first grid point that flips brackets the boundary
        new = flips(eta) & ~found
        hi = torch.where(new, torch.log(eta), hi)
        if k:
            lo = torch.where(new, torch.log(grid[k - 1]), lo)
        found |= new
    passes = float(1 + coarse_steps)
    width = math.log1p(rel_tol)
    active = found & ~wrong & (hi - lo > width)
    while bool(active.any()):  # bisection on log(eta), forwarding only the images whose bracket is still too wide
        idx = active.nonzero().squeeze(1)
        mid = (lo[idx] + hi[idx]) / 2
        step = torch.exp(mid).view(view) * n_hat[idx]
        flipped = model((x[idx] + step).clamp(0, 1)).argmax(dim=1) != y[idx]
        hi[idx] = torch.where(flipped, mid, hi[idx])
        lo[idx] = torch.where(flipped, lo[idx], mid)
        passes += len(idx) / len(x)
        active = found & ~wrong & (hi - lo > width)
    eps = l2_norm((x + torch.exp(hi).view(view) * n_hat).clamp(0, 1) - x)
    eps = torch.where(found, eps, torch.full_like(eps, math.inf))
    eps = torch.where(wrong, torch.zeros_like(eps), eps)
    return eps, passes


def lower_median(values: Tensor) -> float:
    """The lower median (``torch.median``), defined with ``inf`` entries; NaN for an empty tensor."""
    return float(values.median()) if values.numel() else math.nan
