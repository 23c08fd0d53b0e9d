"""On-the-fly DeepAugment-EDSR: the 17 weight ops, resampling, feature distortions, seeding, output range and size."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from robustnoise.augment.deepaugment import WEIGHT_OPS, DeepAugmentEDSR, Draws
from robustnoise.models.edsr import EDSR, CorruptionNetwork
from robustnoise.utils.errors import ConfigError

N_BLOCKS, N_FEATS = 4, 8


def net(resize: str = "sr_then_down") -> CorruptionNetwork:
    torch.manual_seed(0)
    return CorruptionNetwork(EDSR(n_resblocks=N_BLOCKS, n_feats=N_FEATS, scale=2), resize=resize).requires_grad_(False)


def images(n: int = 4) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(n, 3, 12, 12)


FIRST = r"body\.\d\.body\.0\."
SECOND = r"body\.\d\.body\.2\."
# which entries each op may touch, and a property of the new values (new, old) it must have
EXPECTED = {
    "flip_output_channels": (r"body\.\d\.body\.[02]\.(weight|bias)", lambda n, o: torch.equal(n, o.flip(0))),
    "negate_first_conv": (rf"{FIRST}(weight|bias)", lambda n, o: torch.equal(n, -o)),
    "zero_first_conv": (rf"{FIRST}(weight|bias)", lambda n, o: not n.any()),
    "neg_gelu_weights": (r"body\.\d\.body\.[02]\.weight", lambda n, o: torch.allclose(n, -F.gelu(o))),
    "laplacian4_kernel": (
        rf"{FIRST}weight",
        lambda n, o: not n[..., 0, 0].any() and torch.equal(n[..., 1, 1], -4 * o[..., 1, 1]),
    ),
    "laplacian8_kernel": (rf"{FIRST}weight", lambda n, o: torch.equal(n[..., 1, 1], 8 * o[..., 1, 1])),
    # the reference's misplaced -1: the factor is in [1, 5), never a sign change
    "multiplicative_noise": (rf"{SECOND}weight", lambda n, o: bool(((n / o >= 1 - 1e-6) & (n / o < 5)).all())),
    "spatial_flip_and_negate": (
        rf"({FIRST}|{SECOND})weight",
        lambda n, o: torch.equal(n, o.flip(-1)) or torch.equal(n, -o),
    ),
    # the reference's shift kernels are shared by all output channels: every input-channel slice ends up equal
    "shift_kernel_conv": (rf"{FIRST}weight", lambda n, o: torch.allclose(n, n[:, :1].expand_as(n))),
    "random_kernel_conv": (rf"{FIRST}weight", lambda n, o: n.shape == o.shape),
    "dirichlet_kernel_conv": (rf"{SECOND}weight", lambda n, o: n.shape == o.shape),
    "additive_noise": (rf"{SECOND}weight", lambda n, o: bool(((n - o).abs() <= 0.5 + 1e-6).all())),
    "rot90_weights": (r"body\.\d\.body\.[02]\.weight", lambda n, o: n.shape == o.shape),
    "sign_mask": (rf"{FIRST}weight", lambda n, o: torch.equal(n.abs(), o.abs())),
    "binary_mask": (rf"{FIRST}weight", lambda n, o: bool(((n == 0) | (n == o)).all())),
    "negate_filters": (
        rf"{FIRST}weight",
        lambda n, o: all(torch.equal(a, b) or torch.equal(a, -b) for a, b in zip(n, o)),
    ),
    "keep_max_tap": (r"body\.\d\.body\.[02]\.weight", lambda n, o: bool(((n != 0).flatten(2).sum(2) <= 1).all())),
}


def test_all_17_reference_ops_are_implemented():
    assert len(WEIGHT_OPS) == 17 and set(EXPECTED) == set(WEIGHT_OPS)


@pytest.mark.parametrize("name", list(WEIGHT_OPS))
def test_each_weight_op_changes_the_weights_it_should(name):
    clean = net().edsr.state_dict()
    pattern, holds = EXPECTED[name]
    changed_any = set()
    for seed in range(3):
        weights = {k: v.clone() for k, v in clean.items()}
        WEIGHT_OPS[name](weights, Draws(torch.Generator().manual_seed(seed), N_BLOCKS, N_FEATS))
        changed = {k for k in clean if not torch.equal(weights[k], clean[k])}
        assert changed, f"{name} changed nothing"
        assert all(re.fullmatch(pattern, k) for k in changed), sorted(changed)
        assert all(int(k.split(".")[1]) < N_BLOCKS for k in changed)  # never the body's last conv, head or tail
        assert all(holds(weights[k], clean[k]) for k in changed), name
        changed_any |= changed
    assert changed_any


def test_output_is_distorted_in_range_and_at_input_size():
    clean_net = net()
    x = images()
    aug = DeepAugmentEDSR(clean_net, seed=0)
    y = aug(x)
    assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert (y - clean_net(x)).abs().mean() > 1e-3
    assert len(aug.last_ops) == 3 and all(op in WEIGHT_OPS for op in aug.last_ops)
    # the clean network is untouched
    torch.testing.assert_close(clean_net.edsr.state_dict()["body.0.body.0.weight"], net().edsr.body[0].body[0].weight)
    gray = aug(x[:, :1])
    assert gray.shape == (4, 1, 12, 12)


def test_same_seed_same_output_and_different_seed_different():
    x = images()
    a, b, c = (DeepAugmentEDSR(net(), seed=s) for s in (5, 5, 6))
    ya, yb, yc = a(x), b(x), c(x)
    assert torch.equal(ya, yb) and a.last_ops == b.last_ops
    assert not torch.equal(ya, yc)
    assert torch.equal(a(x), b(x))  # the streams stay in step


def test_resampling_probability():
    x = images(2)
    kept = DeepAugmentEDSR(net(), p_resample=0.0, seed=1)
    kept(x)
    first = {k: v.clone() for k, v in kept.distorted.edsr.state_dict().items()}
    kept(x)
    assert all(torch.equal(v, first[k]) for k, v in kept.distorted.edsr.state_dict().items())  # no resample
    fresh = DeepAugmentEDSR(net(), p_resample=1.0, seed=1)
    weights = []
    for _ in range(3):
        fresh(x)
        weights.append({k: v.clone() for k, v in fresh.distorted.edsr.state_dict().items()})
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_feature_distortions_change_the_output():
    x = images(2)
    featured = DeepAugmentEDSR(net(), p_resample=0.0, seed=3)
    featured.resample()
    ref = featured.distorted(x)  # the distorted weights without feature distortions
    outputs = [featured(x) for _ in range(8)]
    assert any((y - ref).abs().max() > 1e-4 for y in outputs)


def test_bad_options_are_rejected():
    with pytest.raises(ConfigError, match="resize=keep"):
        DeepAugmentEDSR(net("keep"))
    with pytest.raises(ConfigError, match="p_resample"):
        DeepAugmentEDSR(net(), p_resample=2.0)
