"""Tests for the ANT noise generators (Rusak et al. 2020, appendix A tables 1–2, appendix K)."""

from __future__ import annotations

import pytest
import torch

from robustnoise.noise import NoiseGenerator, l2_norm, project_to_sphere


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _trainable(gen: NoiseGenerator) -> int:
    return sum(p.numel() for p in gen.parameters() if p.requires_grad)


@pytest.mark.parametrize(("kernel", "expected"), [(1, 983), (3, 4183)])
def test_parameter_counts_appendix_a(kernel: int, expected: int) -> None:
    assert _trainable(NoiseGenerator(kernel=kernel)) == expected


@pytest.mark.parametrize(("depth", "expected"), [(1, 12), (2, 143), (3, 563), (4, 983), (5, 1403)])
def test_parameter_counts_depth_ablation_appendix_k(depth: int, expected: int) -> None:
    assert _trainable(NoiseGenerator(kernel=1, depth=depth)) == expected


def test_layer_structure() -> None:
    gen = NoiseGenerator(kernel=3, depth=4)
    convs = [m for m in gen.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(1, 1), (3, 3), (1, 1), (1, 1)]
    assert all(c.padding == (0, 0) and c.stride == (1, 1) and c.bias is not None for c in convs)
    assert sum(isinstance(m, torch.nn.ReLU) for m in gen.modules()) == 3
    single = [m for m in NoiseGenerator(kernel=3, depth=1).modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in single] == [(3, 3)]


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        NoiseGenerator(kernel=5)
    with pytest.raises(ValueError):
        NoiseGenerator(depth=0)
    with pytest.raises(ValueError):
        NoiseGenerator(channels=3)(torch.zeros(2, 1, 8, 8))


@pytest.mark.parametrize("kernel", [1, 3])
@pytest.mark.parametrize("depth", [1, 4])
def test_output_shape_matches_input(kernel: int, depth: int) -> None:
    x = torch.rand(2, 3, 9, 13)
    out = NoiseGenerator(kernel=kernel, depth=depth)(x)
    assert out.shape == x.shape
    assert out.dtype == x.dtype


@pytest.mark.parametrize("kernel", [1, 3])
def test_init_output_is_close_to_residual_z(kernel: int) -> None:
    x = torch.rand(4, 3, 16, 16)
    out = NoiseGenerator(kernel=kernel, init_std=0.01)(x, generator=_seeded(0))
    pad = kernel - 1
    z = torch.randn(4, 3, 16 + pad, 16 + pad, generator=_seeded(0))
    centre = z[:, :, pad // 2 : pad // 2 + 16, pad // 2 : pad // 2 + 16]
    assert (out - centre).abs().max() < 1e-3
    if kernel == 3:
        # The residual is the centre crop, not a corner crop.
        assert (out - z[:, :, :16, :16]).abs().max() > 1.0
    # With PyTorch's default init the residual branch is far from negligible.
    torch.manual_seed(0)
    default = NoiseGenerator(kernel=kernel, init_std=None)(x, generator=_seeded(0))
    assert (default - centre).abs().max() > 1e-2


@pytest.mark.parametrize("kernel", [1, 3])
def test_receptive_field(kernel: int) -> None:
    torch.manual_seed(1)
    gen = NoiseGenerator(kernel=kernel, init_std=None)
    x = torch.zeros(1, 3, 8, 8)
    z = torch.randn(1, 3, 8 + kernel - 1, 8 + kernel - 1)
    z_hit = z.clone()
    i, j = 4, 5  # a z pixel away from the border
    z_hit[0, 1, i, j] += 10.0
    gen.sample_latent = lambda _x, generator=None: z
    base = gen(x)
    gen.sample_latent = lambda _x, generator=None: z_hit
    changed = (gen(x) - base).abs().amax(dim=1)[0] > 1e-4  # (H, W): output pixels affected (Winograd: ~1e-7 elsewhere)
    expected = torch.zeros(8, 8, dtype=torch.bool)
    if kernel == 1:
        expected[i, j] = True
    else:
        # Output (p, q) reads z[p : p + 3, q : q + 3], so z (i, j) reaches outputs p in [i - 2, i].
        expected[i - 2 : i + 1, j - 2 : j + 1] = True
    assert torch.equal(changed, expected)


def test_noise_ignores_image_values_and_follows_dtype_and_device() -> None:
    gen = NoiseGenerator(kernel=3)
    a = gen(torch.zeros(2, 3, 6, 6), generator=_seeded(5))
    b = gen(torch.rand(2, 3, 6, 6), generator=_seeded(5))
    assert torch.equal(a, b)
    assert not torch.equal(a, gen(torch.zeros(2, 3, 6, 6), generator=_seeded(6)))

    gen64 = NoiseGenerator(kernel=3).double()
    z = gen64.sample_latent(torch.zeros(2, 3, 6, 6, dtype=torch.float64))
    assert z.dtype == torch.float64 and z.shape == (2, 3, 8, 8)
    assert gen64(torch.zeros(2, 3, 6, 6, dtype=torch.float64)).dtype == torch.float64

    # The meta device stands in for an accelerator: z must be created where x lives.
    meta = NoiseGenerator(kernel=3).to("meta")
    out = meta(torch.empty(2, 3, 6, 6, device="meta"))
    assert out.device.type == "meta" and out.shape == (2, 3, 6, 6)


@pytest.mark.parametrize("kernel", [1, 3])
def test_perturb_has_clipped_norm_eps(kernel: int) -> None:
    gen = NoiseGenerator(kernel=kernel)
    x = torch.rand(4, 3, 32, 32)
    x[:, :, :8] = 1.0  # a saturated band
    eps = torch.tensor([1.0, 5.0, 10.0, 20.0])
    y = project_to_sphere(x, gen(x, generator=_seeded(2)), eps)
    assert y.shape == x.shape
    assert y.min() >= 0 and y.max() <= 1
    torch.testing.assert_close(l2_norm(y - x), eps, rtol=1e-4, atol=0)

    x_wide = -1 + 3 * torch.rand(2, 3, 16, 16)
    y_wide = project_to_sphere(x_wide, gen(x_wide), 7.0, -1.0, 2.0)
    assert y_wide.min() >= -1 and y_wide.max() <= 2
    torch.testing.assert_close(l2_norm(y_wide - x_wide), torch.full((2,), 7.0), rtol=1e-4, atol=0)


@pytest.mark.parametrize("kernel", [1, 3])
def test_gradients_reach_generator_parameters(kernel: int) -> None:
    gen = NoiseGenerator(kernel=kernel)
    x = torch.rand(2, 3, 8, 8)
    target = torch.rand(2, 3, 8, 8)
    loss = ((project_to_sphere(x, gen(x, generator=_seeded(3)), 3.0) - target) ** 2).sum()
    loss.backward()
    for name, p in gen.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kernel", [1, 3])
@pytest.mark.parametrize("channels", [1, 3])
def test_forward_equals_the_convolution_stack(kernel: int, channels: int) -> None:
    """The channels-last forward (1x1 convolutions as matrix products) is appendix A's conv stack + residual crop of z,
    values and parameter gradients."""
    torch.manual_seed(0)
    gen = NoiseGenerator(channels=channels, kernel=kernel, init_std=None)
    x = torch.rand(4, channels, 12, 12)
    z = gen.sample_latent(x, torch.Generator().manual_seed(1))
    border = (kernel - 1) // 2
    expected = gen.net(z) + z[:, :, border : border + 12, border : border + 12]
    ours = gen(x, torch.Generator().manual_seed(1))
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    weights = torch.rand_like(ours)
    grads = torch.autograd.grad((expected * weights).sum(), list(gen.parameters()))
    for ours_grad, expected_grad in zip(torch.autograd.grad((ours * weights).sum(), list(gen.parameters())), grads):
        torch.testing.assert_close(ours_grad, expected_grad, rtol=1e-4, atol=1e-5)
