"""Tests for clipping-aware rescaling (Rauber & Bethge 2020; Rusak et al. 2020, §3.2)."""

from __future__ import annotations

import pytest
import torch

from robustnoise.noise.projection import clipping_aware_scale, l2_norm, project_to_sphere


def _images(n: int, shape: tuple[int, ...], a: float, b: float, saturated: float, dtype: torch.dtype, seed: int):
    """Images in [a, b] where a fraction ``saturated`` of the pixels sits exactly on a bound."""
    g = torch.Generator().manual_seed(seed)
    x = a + (b - a) * torch.rand((n, *shape), generator=g, dtype=dtype)
    on_bound = torch.rand((n, *shape), generator=g, dtype=dtype) < saturated
    bound = torch.where(torch.rand((n, *shape), generator=g, dtype=dtype) < 0.5, a, b).to(dtype)
    x = torch.where(on_bound, bound, x)
    delta = torch.randn((n, *shape), generator=g, dtype=dtype)
    return x, delta


def _max_norm(x: torch.Tensor, delta: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """Clipped norm with every pixel that has a direction pushed to its bound."""
    full = torch.where(delta > 0, b - x, torch.where(delta < 0, a - x, torch.zeros_like(x)))
    return l2_norm(full)


def _clipped_norm(x: torch.Tensor, delta: torch.Tensor, eta: torch.Tensor, a: float, b: float) -> torch.Tensor:
    return l2_norm(torch.clamp(x + eta * delta, a, b) - x)


def _bisection_eta(x: torch.Tensor, delta: torch.Tensor, eps: float, a: float, b: float) -> torch.Tensor:
    """Independent solver: bisection on the monotone map eta -> ||clip(x + eta delta) - x||."""
    n = x.shape[0]
    view = (n,) + (1,) * (x.dim() - 1)
    lo = torch.zeros(view, dtype=x.dtype)
    hi = torch.ones(view, dtype=x.dtype)
    while (_clipped_norm(x, delta, hi, a, b) < eps).any():
        hi = hi * 2
    for _ in range(200):
        mid = (lo + hi) / 2
        below = (_clipped_norm(x, delta, mid, a, b) < eps).reshape(view)
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return (lo + hi) / 2


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (-1.0, 2.0)])
@pytest.mark.parametrize("saturated", [0.0, 0.5, 0.9])
def test_clipped_norm_equals_eps_float32(bounds: tuple[float, float], saturated: float) -> None:
    a, b = bounds
    x, delta = _images(6, (3, 16, 16), a, b, saturated, torch.float32, seed=int(10 * saturated))
    max_norm = _max_norm(x, delta, a, b)
    for frac in (0.02, 0.3, 0.7, 0.99):
        eps = frac * max_norm.min().item()
        y = project_to_sphere(x, delta, eps, a, b)
        assert y.dtype == torch.float32
        assert y.min() >= a and y.max() <= b
        norm = l2_norm(y - x)
        torch.testing.assert_close(norm, torch.full_like(norm, eps), rtol=1e-4, atol=0)


def test_extreme_images_mostly_on_bounds() -> None:
    """x near 0 and 1: most pixels saturate before eps is reached."""
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(4, 3, 32, 32, generator=g) > 0.5).float()
    x = (x + 0.01 * torch.rand(x.shape, generator=g) * (1 - 2 * x)).clamp(0, 1)
    delta = torch.randn(x.shape, generator=g)
    eps = 0.8 * _max_norm(x, delta, 0.0, 1.0)
    y = project_to_sphere(x, delta, eps)
    torch.testing.assert_close(l2_norm(y - x), eps, rtol=1e-4, atol=0)


def test_scale_shape_and_dtype() -> None:
    x, delta = _images(5, (2, 4, 3), 0.0, 1.0, 0.2, torch.float64, seed=1)
    eta = clipping_aware_scale(x, delta, 1.0)
    assert eta.shape == (5, 1, 1, 1)
    assert eta.dtype == torch.float64
    assert (eta > 0).all()
    flat = clipping_aware_scale(x.flatten(1), delta.flatten(1), 1.0)
    assert flat.shape == (5, 1)
    torch.testing.assert_close(flat.flatten(), eta.flatten())


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (-1.0, 2.0)])
def test_agrees_with_bisection_float64(bounds: tuple[float, float]) -> None:
    a, b = bounds
    x, delta = _images(4, (3, 8, 8), a, b, 0.3, torch.float64, seed=7)
    eps = 0.6 * _max_norm(x, delta, a, b).min().item()
    eta = clipping_aware_scale(x, delta, eps, a, b)
    reference = _bisection_eta(x, delta, eps, a, b)
    torch.testing.assert_close(eta, reference, rtol=1e-5, atol=0)


def test_unreachable_eps_saturates_every_pixel() -> None:
    x, delta = _images(4, (3, 8, 8), 0.0, 1.0, 0.3, torch.float32, seed=11)
    max_norm = _max_norm(x, delta, 0.0, 1.0)
    eta = clipping_aware_scale(x, delta, 10 * max_norm.max().item())
    assert torch.isfinite(eta).all()
    torch.testing.assert_close(_clipped_norm(x, delta, eta, 0.0, 1.0), max_norm, rtol=1e-5, atol=0)
    # The smallest such eta: the last pixel saturates exactly there.
    headroom = torch.where(delta >= 0, 1.0 - x, x)
    expected = (headroom / delta.abs()).flatten(1).amax(dim=1)
    torch.testing.assert_close(eta.flatten(), expected, rtol=1e-6, atol=0)
    assert (_clipped_norm(x, delta, eta * 0.999, 0.0, 1.0) < max_norm).all()


def test_eps_equal_to_the_saturated_norm_saturates_every_pixel() -> None:
    """eps* probes exactly the fully saturated size: the search's last segment has no linear pixel left."""
    x, delta = _images(8, (1, 28, 28), 0.0, 1.0, 0.6, torch.float32, seed=3)
    for max_norm in (_max_norm(x, delta, 0.0, 1.0), l2_norm(torch.where(delta >= 0, 1 - x, x) * (delta != 0))):
        eta = clipping_aware_scale(x, delta, max_norm)
        torch.testing.assert_close(_clipped_norm(x, delta, eta, 0.0, 1.0), max_norm, rtol=1e-5, atol=0)


def test_zero_direction_entries_are_ignored() -> None:
    x, delta = _images(3, (3, 8, 8), 0.0, 1.0, 0.3, torch.float32, seed=5)
    mask = torch.rand(delta.shape, generator=torch.Generator().manual_seed(0)) < 0.5
    delta = delta * mask
    eps = 0.5 * _max_norm(x, delta, 0.0, 1.0).min().item()
    y = project_to_sphere(x, delta, eps)
    torch.testing.assert_close(l2_norm(y - x), torch.full((3,), eps), rtol=1e-4, atol=0)
    assert torch.equal(y[~mask], x[~mask])


def test_all_zero_direction_row_gives_zero_scale() -> None:
    x, delta = _images(3, (3, 8, 8), 0.0, 1.0, 0.3, torch.float32, seed=6)
    delta[1] = 0.0
    eps = 2.0
    eta = clipping_aware_scale(x, delta, eps)
    assert torch.isfinite(eta).all()
    assert eta[1].item() == 0.0
    y = project_to_sphere(x, delta, eps)
    assert torch.equal(y[1], x[1])
    # The other rows are unaffected by the degenerate one.
    norms = l2_norm(y - x)
    torch.testing.assert_close(norms[[0, 2]], torch.full((2,), eps), rtol=1e-4, atol=0)


def test_zero_or_negative_eps_gives_zero_scale() -> None:
    x, delta = _images(2, (3, 4, 4), 0.0, 1.0, 0.3, torch.float32, seed=2)
    assert torch.equal(clipping_aware_scale(x, delta, 0.0), torch.zeros(2, 1, 1, 1))
    assert torch.equal(clipping_aware_scale(x, delta, torch.tensor([-1.0, 0.0])), torch.zeros(2, 1, 1, 1))


def test_per_image_eps_tensor() -> None:
    x, delta = _images(4, (3, 8, 8), 0.0, 1.0, 0.3, torch.float32, seed=9)
    eps = torch.tensor([0.5, 1.0, 2.0, 4.0])
    y = project_to_sphere(x, delta, eps)
    torch.testing.assert_close(l2_norm(y - x), eps, rtol=1e-4, atol=0)
    per_row = torch.cat([clipping_aware_scale(x[i : i + 1], delta[i : i + 1], eps[i].item()) for i in range(4)])
    torch.testing.assert_close(clipping_aware_scale(x, delta, eps), per_row)
    # A one-element tensor (as stored with a generator state) acts like a scalar.
    torch.testing.assert_close(clipping_aware_scale(x, delta, torch.tensor([2.0])), clipping_aware_scale(x, delta, 2.0))
    with pytest.raises(ValueError):
        clipping_aware_scale(x, delta, torch.ones(3))


@pytest.mark.parametrize("factor", [1e-25, 1e-3, 1e20])
def test_scale_is_inverse_in_delta_magnitude(factor: float) -> None:
    """eta(c·delta) = eta(delta) / c, even where delta**2 would under/overflow in float32."""
    x, delta = _images(3, (3, 8, 8), 0.0, 1.0, 0.3, torch.float32, seed=4)
    eta = clipping_aware_scale(x, delta, 1.5)
    eta_scaled = clipping_aware_scale(x, delta * factor, 1.5)
    torch.testing.assert_close(eta_scaled * factor, eta, rtol=1e-5, atol=0)


def test_gradcheck_wrt_delta_and_eps() -> None:
    x, delta = _images(2, (12,), 0.0, 1.0, 0.25, torch.float64, seed=8)
    delta[0, 3] = 0.0
    eps = (0.5 * _max_norm(x, delta, 0.0, 1.0)).requires_grad_(True)
    delta.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda d, e: clipping_aware_scale(x, d, e), (delta, eps))
    assert torch.autograd.gradcheck(lambda d, e: project_to_sphere(x, d, e), (delta, eps))


def test_gradcheck_unreachable_branch() -> None:
    x, delta = _images(2, (12,), -1.0, 2.0, 0.25, torch.float64, seed=12)
    delta.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda d: clipping_aware_scale(x, d, 100.0, -1.0, 2.0), (delta,))


def test_matches_foolbox_reference() -> None:
    pytest.importorskip("eagerpy")
    car = pytest.importorskip("foolbox.external.clipping_aware_rescaling")
    import eagerpy as ep

    for a, b, saturated in [(0.0, 1.0, 0.0), (0.0, 1.0, 0.6), (-1.0, 2.0, 0.3)]:
        x, delta = _images(4, (3, 8, 8), a, b, saturated, torch.float64, seed=13)
        for eps in (0.5, 3.0, 1e3):
            ours = clipping_aware_scale(x, delta, eps, a, b)
            theirs = car.l2_clipping_aware_rescaling(ep.astensor(x), ep.astensor(delta), eps, a=a, b=b).raw
            torch.testing.assert_close(ours, theirs.reshape(ours.shape), rtol=1e-9, atol=0)


@pytest.mark.parametrize("frac", [0.05, 0.5, 0.95, 0.9999])
def test_newton_segment_search_matches_sort_on_large_images(frac: float) -> None:
    """The Newton search for the saturated set lands on the segment Rauber & Bethge's sort finds (foolbox's
    implementation), on images with thousands of breakpoints and eps from barely clipped to almost all saturated."""
    pytest.importorskip("eagerpy")
    car = pytest.importorskip("foolbox.external.clipping_aware_rescaling")
    import eagerpy as ep

    x, delta = _images(6, (3, 32, 32), 0.0, 1.0, 0.2, torch.float64, seed=21)
    delta = delta * torch.rand(
        delta.shape, generator=torch.Generator().manual_seed(1), dtype=delta.dtype
    )  # many scales of |delta|
    eps = frac * _max_norm(x, delta, 0.0, 1.0)
    ours = clipping_aware_scale(x, delta, eps)
    theirs = torch.stack(
        [
            car.l2_clipping_aware_rescaling(ep.astensor(x[i : i + 1]), ep.astensor(delta[i : i + 1]), e).raw
            for i, e in enumerate(eps.tolist())
        ]
    )
    torch.testing.assert_close(ours, theirs.reshape(ours.shape), rtol=1e-9, atol=0)
