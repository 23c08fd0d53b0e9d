"""EDSR (Lim et al. 2017) as a frozen corruption network (AdA §2, DeepAugment) with the official EDSR-PyTorch
architecture and keys (its released ``edsr[_baseline]_x{2,3,4}-*.pt`` load unchanged); images in [0, 1]."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustnoise.models.weights import extract_state_dict, load_checked, read_weights
from robustnoise.utils.errors import CheckpointError, ConfigError

log = logging.getLogger("robustnoise")

DIV2K_RGB_MEAN: tuple[float, float, float] = (0.4488, 0.4371, 0.4040)
EDSR_PRESETS: dict[str, dict[str, Any]] = {
    "edsr_baseline": {"n_resblocks": 16, "n_feats": 64, "res_scale": 1.0},  # 1.37 M / 1.55 M / 1.52 M at x2/3/4
    "edsr": {"n_resblocks": 32, "n_feats": 256, "res_scale": 0.1},  # the paper's full model
}
_MEAN_SHIFTS = ("sub_mean.", "add_mean.")


def _mean_shift(rgb_range: float, sign: int) -> nn.Conv2d:
    """Fixed 1x1 conv adding ``sign * rgb_range * DIV2K mean`` (the official ``common.MeanShift`` with std 1)."""
    conv = nn.Conv2d(3, 3, kernel_size=1).requires_grad_(False)
    nn.init.dirac_(conv.weight)  # identity
    conv.bias.copy_(sign * rgb_range * torch.tensor(DIV2K_RGB_MEAN))
    return conv


class ResBlock(nn.Module):
    """conv - ReLU - conv, scaled by ``res_scale`` and added to the input (keys ``body.0``, ``body.2``)."""

    def __init__(self, n_feats: int, res_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(n_feats, n_feats), nn.ReLU(inplace=True), _conv(n_feats, n_feats))
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) * self.res_scale + x


def _conv(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1)


def _upsampler(scale: int, n_feats: int) -> nn.Sequential:
    if scale == 3:
        return nn.Sequential(_conv(n_feats, 9 * n_feats), nn.PixelShuffle(3))
    stages = [[_conv(n_feats, 4 * n_feats), nn.PixelShuffle(2)] for _ in range(scale // 2)]  # x1, x2, x4
    return nn.Sequential(*[layer for stage in stages for layer in stage])


class EDSR(nn.Module):
    """Enhanced deep residual network for single-image super-resolution (Lim et al. 2017, official key layout)."""

    def __init__(
        self, n_resblocks: int = 16, n_feats: int = 64, scale: int = 4, res_scale: float = 1.0, rgb_range: float = 255.0
    ) -> None:
        super().__init__()
        if scale not in (1, 2, 3, 4):
            raise ConfigError(f"EDSR scale must be one of (1, 2, 3, 4), got {scale}")
        self.n_resblocks, self.n_feats, self.scale = int(n_resblocks), int(n_feats), int(scale)
        self.res_scale, self.rgb_range = float(res_scale), float(rgb_range)
        self.sub_mean = _mean_shift(rgb_range, -1)
        self.add_mean = _mean_shift(rgb_range, 1)
        self.head = nn.Sequential(_conv(3, n_feats))
        self.body = nn.Sequential(*[ResBlock(n_feats, res_scale) for _ in range(n_resblocks)], _conv(n_feats, n_feats))
        self.tail = nn.Sequential(_upsampler(scale, n_feats), _conv(n_feats, 3))

    def forward(
        self,
        x: Tensor,
        head_hook: Callable[[Tensor], Tensor] | None = None,
        body_fn: Callable[[nn.Sequential, Tensor], Tensor] | None = None,
    ) -> Tensor:
        """SR of ``x`` in [0, 1] (unclamped); ``head_hook``/``body_fn`` are DeepAugment's distortion points."""
        h = self.head(self.sub_mean(x * self.rgb_range))
        h = h if head_hook is None else head_hook(h)
        res = self.body(h) if body_fn is None else body_fn(self.body, h)
        return self.add_mean(self.tail(res + h)) / self.rgb_range

    @property
    def tag(self) -> str:
        """The official file tag ``r{N}f{F}x{scale}``."""
        return f"r{self.n_resblocks}f{self.n_feats}x{self.scale}"


_BODY_INDEX = re.compile(r"^body\.(\d+)\.")
_BASICSR = {"conv_first": "head.0", "conv1": "body.0", "conv2": "body.2", "upsample": "tail.0", "conv_last": "tail.1"}


def _official_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """BasicSR's key names (``conv_first``, ``body.i.conv1``, ``conv_after_body``, ...) renamed to the official ones."""
    if "conv_first.weight" not in state:
        return state
    n = 1 + max((int(m.group(1)) for k in state if (m := _BODY_INDEX.match(k))), default=-1)
    names = {**_BASICSR, "conv_after_body": f"body.{n}"}  # the conv after the n blocks
    return {".".join(names.get(part, part) for part in key.split(".")): value for key, value in state.items()}


def infer_edsr_config(state: Mapping[str, Tensor], path: str = "<state dict>") -> dict[str, Any]:
    """N, F and scale of an official state dict; ``res_scale``: 0.1 when F == 256, else 1."""
    head = state.get("head.0.weight")
    if head is None or head.dim() != 4:
        raise CheckpointError(f"EDSR checkpoint {path}: no head.0.weight (first keys: {', '.join(list(state)[:3])})")
    n_feats = int(head.shape[0])
    # the last body index is N (the conv after the blocks); no body keys: load_checked names the missing ones
    n_resblocks = max((int(m.group(1)) for k in state if (m := _BODY_INDEX.match(k))), default=0)
    up = sorted(int(m.group(1)) for k in state if (m := re.match(r"^tail\.0\.(\d+)\.weight$", k)))
    scale = 3 if up and state[f"tail.0.{up[0]}.weight"].shape[0] == 9 * n_feats else 2 ** len(up)
    return dict(n_resblocks=n_resblocks, n_feats=n_feats, scale=scale, res_scale=0.1 if n_feats == 256 else 1.0)


def load_edsr(path: str | os.PathLike, **overrides: Any) -> EDSR:
    """An EDSR from an official or BasicSR file, its shape read from the weights; ``overrides`` win."""
    path = os.fspath(path)
    state = _official_keys(extract_state_dict(read_weights(path, "EDSR weights"), (), f"EDSR checkpoint {path}"))
    inferred = infer_edsr_config(state, path)
    model = EDSR(**{**inferred, **{k: v for k, v in overrides.items() if v is not None}})
    file_tag = "r{n_resblocks}f{n_feats}x{scale}".format(**inferred)
    load_checked(model, state, f"EDSR weights {path} ({file_tag}) do not fit EDSR {model.tag}", _MEAN_SHIFTS)
    return model


class CorruptionNetwork(nn.Module):
    """An EDSR as a map X -> X (AdA §2's c_phi); ``resize`` undoes the upscaling (reference §1.10)."""

    def __init__(self, edsr: EDSR, resize: str = "sr_then_down", clamp: bool = True) -> None:
        super().__init__()
        if resize not in ("sr_then_down", "down_then_sr", "keep"):
            raise ConfigError(f"corruption_net.resize must be one of sr_then_down, down_then_sr, keep, got {resize!r}")
        self.edsr = edsr
        self.resize = resize
        self.clamp = clamp

    def forward(self, x: Tensor, clamp: bool | None = None, **edsr_kwargs: Any) -> Tensor:
        """c_phi(x) for images (N, C, H, W) in [0, 1], C in {1, 3}; ``edsr_kwargs`` go to :meth:`EDSR.forward`."""
        gray = x.shape[1] == 1
        x = x.expand(-1, 3, -1, -1)  # gray through RGB; a no-op on RGB
        size = x.shape[-2:]
        s = self.edsr.scale
        if s == 1 or self.resize == "keep":
            y = self.edsr(x, **edsr_kwargs)
        elif self.resize == "sr_then_down":
            # exact area downsampling of the s x output; avg_pool2d, unlike interpolate(mode="area") (adaptive
            # pooling), has a deterministic CUDA backward, which AdA's gradients w.r.t. the weights go through
            y = F.avg_pool2d(self.edsr(x, **edsr_kwargs), kernel_size=s)
        else:
            small = (max(1, round(size[0] / s)), max(1, round(size[1] / s)))
            lr = F.interpolate(x, size=small, mode="bicubic", align_corners=False, antialias=True)
            y = self.edsr(lr, **edsr_kwargs)
            if y.shape[-2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        if gray:
            y = y.mean(dim=1, keepdim=True)
        return y.clamp(0.0, 1.0) if (self.clamp if clamp is None else clamp) else y

    def perturbable_parameters(self) -> dict[str, Tensor]:
        """Conv weights and biases but the mean shifts: ``functional_call`` with ``p + beta`` is c_{phi+beta}."""
        return {
            name: p for name, p in self.named_parameters() if not name.removeprefix("edsr.").startswith(_MEAN_SHIFTS)
        }


_CFG_KEYS = {"variant", "scale", "weights", "resize", "n_resblocks", "n_feats", "res_scale", "rgb_range"}
_ARCH_KEYS = ("n_resblocks", "n_feats", "res_scale", "rgb_range")


def build_edsr(cfg: Mapping[str, Any], node: str = "corruption_net") -> EDSR:
    """The (not frozen) EDSR of a config: ``variant``, ``scale``, ``weights`` (null: random), architecture keys."""
    variant, weights = cfg.get("variant", "edsr_baseline"), cfg.get("weights")
    if variant not in (*EDSR_PRESETS, "custom"):
        raise ConfigError(f"{node}.variant must be edsr_baseline, edsr or custom, got {variant!r}")
    given = {k: cfg.get(k) for k in (*_ARCH_KEYS, "scale") if cfg.get(k) is not None}
    if variant == "custom" and not weights and not {"n_resblocks", "n_feats"} <= set(given):
        raise ConfigError(f"{node}.variant=custom needs n_resblocks and n_feats (or weights)")
    arch = {**EDSR_PRESETS.get(variant, {}), **given}
    return load_edsr(str(weights), **arch) if weights else EDSR(**arch)


def build_corruption_network(cfg: Mapping[str, Any]) -> CorruptionNetwork:
    """A frozen corruption network of the ``corruption_net`` config (random weights: a warning)."""
    if unknown := set(cfg) - _CFG_KEYS:
        raise ConfigError(
            f"unknown corruption_net keys: {', '.join(sorted(unknown))} (known: {', '.join(sorted(_CFG_KEYS))})"
        )
    net = build_edsr(cfg)
    if not cfg.get("weights"):
        log.warning("corruption network %s is randomly initialised: set corruption_net.weights", net.tag)
    return CorruptionNetwork(net, resize=cfg.get("resize") or "sr_then_down").requires_grad_(False).eval()
