"""DeepAugment-EDSR on the fly (Hendrycks et al. 2021; hendrycks/imagenet-r ``DeepAugment/EDSR_distort_imagenet.py``):
3 of 17 weight ops (re-drawn with probability 0.05) plus head and body feature distortions, clamped to [0, 1], with
the reference's distributions (not streams) and quirks: head masks' P(1) = 0.95 / P(+1) = 0.975, ReLU and (channel,
height) flip with probability 1/3, and those commented at their lines."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustnoise.models.edsr import CorruptionNetwork
from robustnoise.utils.errors import ConfigError


@dataclass
class Draws:
    """The random choices of the ops, from one CPU ``torch.Generator`` (reproducible on any device)."""

    generator: torch.Generator
    n_resblocks: int
    n_feats: int

    def randint(self, low: int, high: int) -> int:
        """Uniform integer in [low, high] (inclusive, as Python's ``random.randint``)."""
        return int(torch.randint(low, high + 1, (1,), generator=self.generator))

    def uniform(self) -> float:
        return float(torch.rand((), generator=self.generator))

    def choice(self, options: Sequence) -> object:
        return options[self.randint(0, len(options) - 1)]

    def block(self, reference: Sequence[int]) -> int:
        """One of the reference's block indices that exist here (of all blocks if none does)."""
        return int(self.choice([i for i in reference if i < self.n_resblocks] or range(self.n_resblocks)))

    def rand_like(self, t: Tensor) -> Tensor:
        return torch.rand(t.shape, generator=self.generator).to(device=t.device, dtype=t.dtype)

    def seed(self) -> int:
        return int(torch.randint(2**62, (1,), generator=self.generator))


Weights = dict[str, Tensor]
WeightOp = Callable[[Weights, Draws], None]
TensorOp = Callable[[Tensor, Draws], Tensor]

# The reference's block sets (for EDSR-baseline's 16 blocks).
_EVERY_3RD = range(0, 10, 3)  # 0, 3, 6, 9
_EVERY_3RD_FROM_1 = range(1, 10, 3)  # 1, 4, 7
_EVERY_4TH_FROM_1 = range(1, 13, 4)  # 1, 5, 9
_ALL_BUT_LAST = range(15)
_ROT_DIMS = ((2, 3), (0, 1))


def _op(blocks: Sequence[int], convs: Sequence[int], fn: TensorOp, bias: bool = False, times: int = 1) -> WeightOp:
    """``times`` times ``t = fn(t, draws)`` on convs ``convs`` (empty: one drawn) of a drawn block of ``blocks``."""

    def op(w: Weights, d: Draws) -> None:
        for _ in range(times):
            i = d.block(blocks)
            for j in convs or [int(d.choice([0, 2]))]:
                for what in ("weight", "bias") if bias else ("weight",):
                    w[f"body.{i}.body.{j}.{what}"] = fn(w[f"body.{i}.body.{j}.{what}"], d)

    return op


def _flip_and_negate(w: Weights, d: Draws) -> None:
    i = d.block(_EVERY_3RD)
    w[f"body.{i}.body.0.weight"] = w[f"body.{i}.body.0.weight"].flip(-1)
    w[f"body.{i}.body.2.weight"] = -w[f"body.{i}.body.2.weight"]


def _shift_kernels(t: Tensor, d: Draws) -> Tensor:
    z = torch.zeros_like(t)
    for j in range(z.shape[0]):
        sx, sy = d.randint(0, 2), d.randint(0, 2)
        z[:, j, sx, sy] = float(d.choice([1.0, -1.0]))  # every output channel at once (reference quirk)
    return F.conv2d(t, z, padding=1)


def _dirichlet_kernels(t: Tensor, d: Draws) -> Tensor:
    n = d.n_feats
    z = torch.as_tensor(np.random.default_rng(d.seed()).dirichlet([0.1] * 9, (n, n)), dtype=t.dtype)
    return F.conv2d(t, z.view(n, n, 3, 3).to(t.device), padding=1)


def _negate_filters(t: Tensor, d: Draws) -> Tensor:
    chosen = torch.tensor([d.randint(0, d.n_feats - 1) for _ in range(d.n_feats // 2)])
    t = t.clone()
    t[chosen.unique().to(t.device)] *= -1
    return t


def _keep_max_tap(t: Tensor, d: Draws) -> Tensor:
    top = t.flatten(2).topk(1, dim=2)
    return torch.zeros_like(t.flatten(2)).scatter(2, top.indices, top.values).view_as(t)


WEIGHT_OPS: dict[str, WeightOp] = {  # the reference's options 0..16, in its order
    "flip_output_channels": _op(_EVERY_3RD, (0, 2), lambda t, d: t.flip(0), bias=True),
    "negate_first_conv": _op(_EVERY_3RD_FROM_1, (0,), lambda t, d: -t, bias=True),
    "zero_first_conv": _op(_EVERY_3RD, (0,), lambda t, d: torch.zeros_like(t), bias=True),
    "neg_gelu_weights": _op(_EVERY_3RD, (0, 2), lambda t, d: -F.gelu(t)),
    "laplacian4_kernel": _op(_EVERY_3RD, (0,), lambda t, d: t * t.new_tensor([[0, 1, 0], [1, -4, 1], [0, 1, 0]])),
    "laplacian8_kernel": _op(
        _EVERY_3RD, (0,), lambda t, d: t * t.new_tensor([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]])
    ),
    # w * (1 + 2u * 2U[0, 1)): the reference's misplaced -1
    "multiplicative_noise": _op(_EVERY_3RD, (2,), lambda t, d: t * (1 + 2 * d.uniform() * (2 * d.rand_like(t)))),
    "spatial_flip_and_negate": _flip_and_negate,  # first conv's kernels flipped horizontally, second conv negated
    "shift_kernel_conv": _op(_EVERY_4TH_FROM_1, (0,), _shift_kernels),
    "random_kernel_conv": _op(
        _EVERY_3RD, (0,), lambda t, d: F.conv2d(t, (2 * d.uniform() * d.rand_like(t) - 1) / 6.0, padding=1)
    ),
    "dirichlet_kernel_conv": _op(_EVERY_4TH_FROM_1, (2,), _dirichlet_kernels),
    "additive_noise": _op(_ALL_BUT_LAST, (2,), lambda t, d: t + (d.rand_like(t) - 0.5)),
    # k in {1, 2, 3} quarter turns in the spatial or the (out, in) channel dims
    "rot90_weights": _op(_ALL_BUT_LAST, (), lambda t, d: t.rot90(d.randint(1, 3), _ROT_DIMS[d.randint(0, 1)]), times=5),
    "sign_mask": _op(_ALL_BUT_LAST, (0,), lambda t, d: t * (torch.round(d.rand_like(t)) * 2 - 1), times=5),
    "binary_mask": _op(_ALL_BUT_LAST, (0,), lambda t, d: t * torch.round(d.rand_like(t)), times=5),
    # F/2 filters drawn with replacement (32 of 64)
    "negate_filters": _op(_ALL_BUT_LAST, (0,), _negate_filters, times=5),
    "keep_max_tap": _op(_ALL_BUT_LAST, (), _keep_max_tap, times=5),
}


class DeepAugmentEDSR(nn.Module):
    """DeepAugment-EDSR images, the distortion re-drawn with probability ``p_resample`` per call."""

    def __init__(self, net: CorruptionNetwork, p_resample: float = 0.05, seed: int | None = None) -> None:
        super().__init__()
        if net.resize == "keep" and net.edsr.scale != 1:
            raise ConfigError("DeepAugmentEDSR needs same-size outputs: corruption_net.resize=keep is not supported")
        if not 0.0 <= p_resample <= 1.0:
            raise ConfigError(f"deepaugment p_resample must be in [0, 1], got {p_resample}")
        self.net = net
        self.p_resample = float(p_resample)
        self.distorted = copy.deepcopy(net).requires_grad_(False).eval()
        self.generator = torch.Generator().manual_seed(int(torch.randint(2**62, (1,))) if seed is None else seed)
        self.draws = Draws(self.generator, net.edsr.n_resblocks, net.edsr.n_feats)
        self.sampled = False
        self.last_ops: list[str] = []
        self.resample_state: torch.Tensor | None = None

    @torch.no_grad()
    def resample(self) -> None:
        """Draw new distorted weights; from ``resample_state`` it rebuilds them (resume)."""
        self.resample_state = self.generator.get_state()
        weights = {k: v.detach().clone() for k, v in self.net.edsr.state_dict().items()}
        names = [str(self.draws.choice(list(WEIGHT_OPS))) for _ in range(3)]  # with replacement
        for name in names:
            WEIGHT_OPS[name](weights, self.draws)
        self.distorted.edsr.load_state_dict(weights)
        self.sampled, self.last_ops = True, names

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        """Distorted images (N, C, H, W) in [0, 1] for images ``x`` in [0, 1]."""
        if not self.sampled or self.draws.uniform() < self.p_resample:
            self.resample()
        return self.distorted(x, clamp=True, **self._feature_hooks(x.device))

    def _feature_hooks(self, device: torch.device) -> dict[str, Callable]:
        d = self.draws
        head = d.choice(("copy_channels", "binary_mask", "sign_mask", "none"))
        body = d.choice(("negate", "activation", "flip", "skip_blocks", "none"))
        device_gen = torch.Generator(device=device).manual_seed(d.seed())
        pairs = [(d.randint(0, d.n_feats - 1), d.randint(0, d.n_feats - 1)) for _ in range(5)]

        def head_hook(h: Tensor) -> Tensor:
            if head == "copy_channels":
                h = h.clone()
                for c1, c2 in pairs:
                    h[:, c1] = h[:, c2]  # the reference's tuple "swap" of views: c2 copied into c1
            elif head != "none":
                r = torch.rand(h.shape, generator=device_gen, device=h.device, dtype=h.dtype)
                h = h * (torch.round(r + 0.45) if head == "binary_mask" else torch.round(r + 0.475) * 2 - 1)
            return h

        relu = d.randint(0, 2) == 1
        flip_dims = [1, 2] if d.randint(0, 2) == 1 else [1, 3]
        to_skip = {d.randint(2, d.n_resblocks) for _ in range(3)} if d.n_resblocks >= 2 else set()
        middle = {"negate": torch.neg, "activation": F.relu if relu else F.gelu, "flip": lambda r: r.flip(flip_dims)}

        def body_fn(seq: nn.Sequential, h: Tensor) -> Tensor:
            if body == "skip_blocks":
                last = max(i for i in range(len(seq)) if i not in to_skip)
                return seq[last](h)  # each kept block sees the head features: only the last kept one counts
            if body == "none":
                return seq(h)
            return seq[5:](middle[body](seq[:5](h)))  # after the first 5 body modules (the reference's)

        return {"head_hook": head_hook, "body_fn": body_fn}
