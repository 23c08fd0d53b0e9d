"""On-the-fly DeepAugment with EDSR (Hendrycks et al. 2021, *The many faces of robustness*, DeepAugment).

The reference (hendrycks/imagenet-r ``DeepAugment/EDSR_distort_imagenet.py``) writes a distorted copy of ImageNet
offline: every image goes through an EDSR-baseline x4 whose weights were distorted by 3 ops drawn with replacement
from 17 (re-drawn from the clean weights with probability 0.05 per image), plus one random feature distortion after
the head and one in the body per image. :class:`DeepAugmentEDSR` does the same on the training device, on batches:

- all 17 weight ops are implemented (:data:`WEIGHT_OPS`, in the reference's option order 0..16, one named function
  each), with the reference's block choices restricted to the network's blocks (``[0, 3, 6, 9]`` for op 0 becomes
  ``[0]`` on a 2-block network; all blocks if none is left) and its hard-coded 64 features replaced by the network's;
- the head distortions (copy 5 channels, 0/1 mask, +-1 mask, none) and body distortions (negate, ReLU/GELU, flip,
  skip blocks, none) are drawn once per call (``per_image=True``: once per image, like the reference, at the cost of
  one network call per image);
- the first call always draws distorted weights (the reference starts from ``get_weights()``), later calls re-draw
  them with probability ``p_resample`` per call (per image with ``per_image``);
- the output goes through :class:`~robustnoise.models.edsr.CorruptionNetwork` (input size, clamped to [0, 1]); the
  reference keeps EDSR's 4x upscaled output of a 128 px image instead.

Faithful quirks (kept on purpose; the reference's datasets were made with them):

- op 6 (multiplicative noise) computes ``w * (1 + 2u * (2 * rand_like(w - 1)))``: the ``-1`` sits inside
  ``rand_like`` so the factor is in [1, 1 + 4u), always positive, at most 5 — not the intended [1 - 2u, 1 + 2u);
- op 8 (shift kernel) fills ``z[:, j, sx, sy]`` for every output channel at once, so after ``conv2d(w, z)`` every
  input-channel slice of each filter is the same sum of shifted, signed slices;
- op 15 negates 32 filters drawn *with replacement*: a filter drawn twice is negated once (index assignment), a block
  drawn twice has its filter sets negated twice (overlaps restored);
- head "swap" of 5 channel pairs is a tuple swap of tensor views, which copies channel c2 into c1 and leaves c2 as is;
- head masks are ``round(rand + 0.45)`` and ``round(rand + 0.475) * 2 - 1``: P(1) = 0.95 and P(+1) = 0.975 (not
  0.55 / 0.525 as the offsets suggest);
- body "skip up to 3 blocks" applies every kept block to the head features, so the result is the last kept block of
  the body applied to the head features alone (computed directly here);
- ReLU vs GELU and the flip axes use ``randint(0, 2) == 1``: ReLU / (channel, height) flip with probability 1/3,
  GELU / (channel, width) flip with 2/3.

Random numbers come from one seeded ``torch.Generator`` (CPU; device masks from a device generator seeded from it)
and a NumPy generator seeded from it for the Dirichlet kernels: the distributions are the reference's, the streams
are not.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustnoise.models.edsr import CorruptionNetwork
from robustnoise.utils.errors import ConfigError

__all__ = ["BODY_DISTORTIONS", "HEAD_DISTORTIONS", "WEIGHT_OPS", "DeepAugmentEDSR", "Draws"]


class Draws:
    """The random choices of the ops, from one CPU ``torch.Generator`` (reproducible on any device)."""

    def __init__(self, generator: torch.Generator, n_resblocks: int, n_feats: int) -> None:
        self.generator = generator
        self.n_resblocks = n_resblocks
        self.n_feats = n_feats

    def randint(self, low: int, high: int) -> int:
        """Uniform integer in [low, high] (inclusive, as Python's ``random.randint``)."""
        return int(torch.randint(low, high + 1, (1,), generator=self.generator))

    def uniform(self) -> float:
        return float(torch.rand((), generator=self.generator))

    def choice(self, options: Sequence) -> object:
        return options[self.randint(0, len(options) - 1)]

    def blocks(self, reference: Sequence[int]) -> list[int]:
        """The reference's block indices that exist here (all blocks if none does)."""
        return [i for i in reference if i < self.n_resblocks] or list(range(self.n_resblocks))

    def block(self, reference: Sequence[int]) -> int:
        return int(self.choice(self.blocks(reference)))

    def rand_like(self, t: Tensor) -> Tensor:
        return torch.rand(t.shape, generator=self.generator).to(device=t.device, dtype=t.dtype)

    def numpy(self) -> np.random.Generator:
        return np.random.default_rng(int(torch.randint(2**62, (1,), generator=self.generator)))


Weights = dict[str, Tensor]

# The reference's block sets (for EDSR-baseline's 16 blocks).
_EVERY_3RD = range(0, 10, 3)  # 0, 3, 6, 9
_EVERY_3RD_FROM_1 = range(1, 10, 3)  # 1, 4, 7
_EVERY_4TH_FROM_1 = range(1, 13, 4)  # 1, 5, 9
_ALL_BUT_LAST = range(15)


def _k(i: int, j: int, what: str = "weight") -> str:
    return f"body.{i}.body.{j}.{what}"


def _map(w: Weights, i: int, convs: Sequence[int], fn: Callable[[Tensor], Tensor], bias: bool = False) -> None:
    """``fn`` applied to the weights (and biases) of convs ``convs`` (0: first, 2: second) of block ``i``."""
    for j in convs:
        for what in ("weight", "bias") if bias else ("weight",):
            w[_k(i, j, what)] = fn(w[_k(i, j, what)])


def _taps(rows: list[list[float]]) -> Callable[[Tensor], Tensor]:
    return lambda t: t * torch.tensor(rows, dtype=t.dtype, device=t.device).view(1, 1, 3, 3)


def flip_output_channels(w: Weights, d: Draws) -> None:
    """Op 0: reverse the output-channel order of both convs (weights and biases) of one block in {0, 3, 6, 9}."""
    _map(w, d.block(_EVERY_3RD), (0, 2), lambda t: t.flip(0), bias=True)


def negate_first_conv(w: Weights, d: Draws) -> None:
    """Op 1: negate the first conv (weight and bias) of one block in {1, 4, 7}."""
    _map(w, d.block(_EVERY_3RD_FROM_1), (0,), torch.neg, bias=True)


def zero_first_conv(w: Weights, d: Draws) -> None:
    """Op 2: zero the first conv (weight and bias) of one block in {0, 3, 6, 9}."""
    _map(w, d.block(_EVERY_3RD), (0,), torch.zeros_like, bias=True)


def neg_gelu_weights(w: Weights, d: Draws) -> None:
    """Op 3: replace both conv weights of one block in {0, 3, 6, 9} by -GELU(w) (biases kept)."""
    _map(w, d.block(_EVERY_3RD), (0, 2), lambda t: -F.gelu(t))


def laplacian4_kernel(w: Weights, d: Draws) -> None:
    """Op 4: multiply the first conv's 3x3 taps of one block in {0, 3, 6, 9} by [[0,1,0],[1,-4,1],[0,1,0]]."""
    _map(w, d.block(_EVERY_3RD), (0,), _taps([[0, 1, 0], [1, -4, 1], [0, 1, 0]]))


def laplacian8_kernel(w: Weights, d: Draws) -> None:
    """Op 5: multiply the first conv's taps of one block in {0, 3, 6, 9} by [[-1,-1,-1],[-1,8,-1],[-1,-1,-1]]."""
    _map(w, d.block(_EVERY_3RD), (0,), _taps([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]))


def multiplicative_noise(w: Weights, d: Draws) -> None:
    """Op 6: second conv of one block in {0, 3, 6, 9} times 1 + 2u * 2U[0, 1) (the reference's misplaced -1)."""
    i = d.block(_EVERY_3RD)
    u = d.uniform()
    w[_k(i, 2)] = w[_k(i, 2)] * (1 + 2 * u * (2 * d.rand_like(w[_k(i, 2)])))


def spatial_flip_and_negate(w: Weights, d: Draws) -> None:
    """Op 7: flip the first conv's kernels horizontally and negate the second conv's weights (block in {0,3,6,9})."""
    i = d.block(_EVERY_3RD)
    _map(w, i, (0,), lambda t: t.flip(-1))
    _map(w, i, (2,), torch.neg)


def shift_kernel_conv(w: Weights, d: Draws) -> None:
    """Op 8: convolve the first conv's weights (block in {1, 5, 9}) with random signed one-hot 3x3 shift kernels."""
    i = d.block(_EVERY_4TH_FROM_1)
    weight = w[_k(i, 0)]
    z = torch.zeros_like(weight)
    for j in range(z.shape[0]):
        sx, sy = d.randint(0, 2), d.randint(0, 2)
        z[:, j, sx, sy] = float(d.choice([1.0, -1.0]))  # every output channel at once (reference quirk)
    w[_k(i, 0)] = F.conv2d(weight, z, padding=1)


def random_kernel_conv(w: Weights, d: Draws) -> None:
    """Op 9: convolve the first conv's weights (block in {0, 3, 6, 9}) with a random kernel (2 U u - 1) / 6."""
    i = d.block(_EVERY_3RD)
    weight = w[_k(i, 0)]
    u = d.uniform()
    z = (2 * d.rand_like(weight) * u - 1) / 6.0
    w[_k(i, 0)] = F.conv2d(weight, z, padding=1)


def dirichlet_kernel_conv(w: Weights, d: Draws) -> None:
    """Op 10: convolve the second conv's weights (block in {1, 5, 9}) with Dirichlet(0.1) 3x3 mixing kernels."""
    i = d.block(_EVERY_4TH_FROM_1)
    weight = w[_k(i, 2)]
    n = d.n_feats
    z = torch.as_tensor(d.numpy().dirichlet([0.1] * 9, (n, n)), dtype=weight.dtype).view(n, n, 3, 3)
    w[_k(i, 2)] = F.conv2d(weight, z.to(weight.device), padding=1)


def additive_noise(w: Weights, d: Draws) -> None:
    """Op 11: add U(-0.5, 0.5) noise to the second conv's weights of one block in 0..14."""
    i = d.block(_ALL_BUT_LAST)
    w[_k(i, 2)] = w[_k(i, 2)] + (d.rand_like(w[_k(i, 2)]) - 0.5)


def rot90_weights(w: Weights, d: Draws) -> None:
    """Op 12: 5 times, rotate one conv (block in 0..14, first or second) by k in {1, 2, 3} quarter turns in the
    spatial dims or in the (out, in) channel dims (probability 1/2 each)."""
    for _ in range(5):
        i, j = d.block(_ALL_BUT_LAST), int(d.choice([0, 2]))
        k = d.randint(1, 3)
        dims = (2, 3) if d.randint(0, 1) == 0 else (0, 1)
        w[_k(i, j)] = torch.rot90(w[_k(i, j)], k=k, dims=dims)


def sign_mask(w: Weights, d: Draws) -> None:
    """Op 13: multiply the first conv's weights of 5 blocks (0..14, with replacement) by random +-1 (P = 1/2)."""
    for _ in range(5):
        i = d.block(_ALL_BUT_LAST)
        w[_k(i, 0)] = w[_k(i, 0)] * (torch.round(d.rand_like(w[_k(i, 0)])) * 2 - 1)


def binary_mask(w: Weights, d: Draws) -> None:
    """Op 14: multiply the first conv's weights of 5 blocks (0..14, with replacement) by random 0/1 (P = 1/2)."""
    for _ in range(5):
        i = d.block(_ALL_BUT_LAST)
        w[_k(i, 0)] = w[_k(i, 0)] * torch.round(d.rand_like(w[_k(i, 0)]))


def negate_filters(w: Weights, d: Draws) -> None:
    """Op 15: in the first conv of 5 blocks (0..14), negate F/2 filters drawn with replacement (32 of 64)."""
    for _ in range(5):
        i = d.block(_ALL_BUT_LAST)
        chosen = torch.tensor([d.randint(0, d.n_feats - 1) for _ in range(d.n_feats // 2)]).unique()
        weight = w[_k(i, 0)].clone()
        weight[chosen.to(weight.device)] *= -1
        w[_k(i, 0)] = weight


def keep_max_tap(w: Weights, d: Draws) -> None:
    """Op 16: 5 times, keep only the largest of the 9 taps of every filter of one conv (block 0..14, first or
    second), zeroing the others."""
    for _ in range(5):
        i, j = d.block(_ALL_BUT_LAST), int(d.choice([0, 2]))
        weight = w[_k(i, j)]
        flat = weight.reshape(weight.shape[0], weight.shape[1], -1)
        top = flat.topk(1, dim=2)
        w[_k(i, j)] = torch.zeros_like(flat).scatter(2, top.indices, top.values).view_as(weight)


WEIGHT_OPS: dict[str, Callable[[Weights, Draws], None]] = {
    f.__name__: f
    for f in (
        flip_output_channels,
        negate_first_conv,
        zero_first_conv,
        neg_gelu_weights,
        laplacian4_kernel,
        laplacian8_kernel,
        multiplicative_noise,
        spatial_flip_and_negate,
        shift_kernel_conv,
        random_kernel_conv,
        dirichlet_kernel_conv,
        additive_noise,
        rot90_weights,
        sign_mask,
        binary_mask,
        negate_filters,
        keep_max_tap,
    )
}
HEAD_DISTORTIONS: tuple[str, ...] = ("copy_channels", "binary_mask", "sign_mask", "none")
BODY_DISTORTIONS: tuple[str, ...] = ("negate", "activation", "flip", "skip_blocks", "none")
_SPLIT = 5  # the body distortions act after the first 5 body modules


class DeepAugmentEDSR(nn.Module):
    """DeepAugment-EDSR images, computed on the fly on the input's device; output at input size, in [0, 1].

    Args:
        net: the clean corruption network (pretrained EDSR; kept unchanged, a distorted copy is held here).
        p_resample: probability per call (per image with ``per_image``) of re-drawing the distorted weights.
        n_ops: weight ops per re-draw, drawn with replacement (3 in the reference).
        ops: names from :data:`WEIGHT_OPS` to draw from (default: all 17).
        feature_distortions: apply the reference's head and body feature distortions.
        per_image: draw the resampling and the feature distortions per image (one network call per image).
        seed: seed of the augmentation's generator (None: drawn from torch's global generator).
    """

    def __init__(
        self,
        net: CorruptionNetwork,
        p_resample: float = 0.05,
        n_ops: int = 3,
        ops: Sequence[str] | None = None,
        feature_distortions: bool = True,
        per_image: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if net.resize == "keep" and net.scale != 1:
            raise ConfigError("DeepAugmentEDSR needs same-size outputs: corruption_net.resize=keep is not supported")
        if not 0.0 <= p_resample <= 1.0:
            raise ConfigError(f"deepaugment p_resample must be in [0, 1], got {p_resample}")
        self.ops = list(WEIGHT_OPS) if ops is None else list(ops)
        unknown = [o for o in self.ops if o not in WEIGHT_OPS]
        if unknown or not self.ops:
            raise ConfigError(f"unknown DeepAugment weight ops {unknown}: choose from {', '.join(WEIGHT_OPS)}")
        self.net = net
        self.distorted = copy.deepcopy(net).requires_grad_(False).eval()
        self.p_resample = float(p_resample)
        self.n_ops = int(n_ops)
        self.feature_distortions = feature_distortions
        self.per_image = per_image
        if seed is None:
            seed = int(torch.randint(2**62, (1,)))
        self.generator = torch.Generator().manual_seed(seed)
        self.draws = Draws(self.generator, net.edsr.n_resblocks, net.edsr.n_feats)
        self.sampled = False
        self.last_ops: list[str] = []
        self.resample_state: torch.Tensor | None = None

    @torch.no_grad()
    def resample(self) -> list[str]:
        """Draw new distorted weights from the clean ones: ``n_ops`` ops with replacement. Returns their names.

        The generator state at the start is kept (``resample_state``): setting it back and resampling rebuilds the
        same weights (how a resumed run gets each rank's own distorted network back).
        """
        self.resample_state = self.generator.get_state()
        weights = {k: v.detach().clone() for k, v in self.net.edsr.state_dict().items()}
        names = [str(self.draws.choice(self.ops)) for _ in range(self.n_ops)]
        for name in names:
            WEIGHT_OPS[name](weights, self.draws)
        self.distorted.edsr.load_state_dict(weights)
        self.sampled, self.last_ops = True, names
        return names

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        """Distorted images (N, C, H, W) in [0, 1] for images ``x`` in [0, 1]."""
        if self.per_image:
            return torch.cat([self._one_call(x[i : i + 1]) for i in range(x.shape[0])])
        return self._one_call(x)

    def _one_call(self, x: Tensor) -> Tensor:
        if not self.sampled or self.draws.uniform() < self.p_resample:
            self.resample()
        kwargs = self._feature_hooks(x.device) if self.feature_distortions else {}
        return self.distorted(x, clamp=True, **kwargs)

    def _feature_hooks(self, device: torch.device) -> dict[str, Callable]:
        d = self.draws
        head = HEAD_DISTORTIONS[d.randint(0, 3)]
        body = BODY_DISTORTIONS[d.randint(0, 4)]
        device_gen = torch.Generator(device=device).manual_seed(int(torch.randint(2**62, (1,), generator=d.generator)))
        pairs = [(d.randint(0, d.n_feats - 1), d.randint(0, d.n_feats - 1)) for _ in range(5)]

        def head_hook(h: Tensor) -> Tensor:
            if head == "copy_channels":
                h = h.clone()
                for c1, c2 in pairs:
                    h[:, c1] = h[:, c2]  # the reference's tuple "swap" of views (module docstring)
            elif head == "binary_mask":
                h = h * torch.round(torch.rand(h.shape, generator=device_gen, device=h.device, dtype=h.dtype) + 0.45)
            elif head == "sign_mask":
                r = torch.rand(h.shape, generator=device_gen, device=h.device, dtype=h.dtype)
                h = h * (torch.round(r + 0.475) * 2 - 1)
            return h

        relu = d.randint(0, 2) == 1
        flip_dims = [1, 2] if d.randint(0, 2) == 1 else [1, 3]
        n = d.n_resblocks
        to_skip = {d.randint(2, n) for _ in range(3)} if n >= 2 else set()

        def body_fn(seq: nn.Sequential, h: Tensor) -> Tensor:
            if body == "negate":
                return seq[_SPLIT:](-seq[:_SPLIT](h))
            if body == "activation":
                r = seq[:_SPLIT](h)
                return seq[_SPLIT:](F.relu(r) if relu else F.gelu(r))
            if body == "flip":
                return seq[_SPLIT:](seq[:_SPLIT](h).flip(flip_dims))
            if body == "skip_blocks":
                last = max(i for i in range(len(seq)) if i not in to_skip)
                return seq[last](h)  # each kept block sees the head features: only the last kept one counts
            return seq(h)

        return {"head_hook": head_hook, "body_fn": body_fn}
