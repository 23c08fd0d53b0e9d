"""EDSR (Lim et al. 2017) as a frozen image-to-image corruption network (AdA §2, DeepAugment).

The architecture and the state-dict key layout are those of the official EDSR-PyTorch code, so its released files
(``edsr_baseline_x{2,3,4}-*.pt``, ``edsr_x{2,3,4}-*.pt``) load unchanged:

- ``sub_mean`` / ``add_mean``: MeanShift 1x1 convs (identity weight, bias -/+ rgb_range * DIV2K mean), fixed
  (``requires_grad=False``) but in the state dict;
- ``head.0``: conv 3x3 n_colors -> F;
- ``body.{i}.body.0`` / ``body.{i}.body.2`` (i < N): the two convs of residual block i (index 1 is the ReLU);
  ``body.{N}``: the body's last conv; a global skip adds the head output;
- ``tail.0``: the upsampler, ``tail.0.{0,2,..}`` conv F -> 4F + PixelShuffle(2) per factor 2 (scale 2 and 4), or one
  conv F -> 9F + PixelShuffle(3) (scale 3); at **scale 1** ``tail.0`` is an empty Sequential (identity), as in the
  official code, so ``tail.1`` is still the final conv;
- ``tail.1``: conv 3x3 F -> n_colors.

Images enter and leave in [0, 1]; inside, the network works in [0, rgb_range] as the official code (``x * rgb_range``
in, ``/ rgb_range`` out). Presets: ``edsr_baseline`` (16 blocks, 64 features, res_scale 1) and ``edsr`` (the paper's
full model: 32 blocks, 256 features, res_scale 0.1).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustnoise.models.weights import read_weights
from robustnoise.utils.errors import CheckpointError, ConfigError

__all__ = [
    "DIV2K_RGB_MEAN",
    "EDSR",
    "EDSR_PRESETS",
    "RESIZE_MODES",
    "CorruptionNetwork",
    "build_corruption_network",
    "build_edsr",
    "edsr",
    "edsr_baseline",
    "load_edsr",
]

log = logging.getLogger("robustnoise")

DIV2K_RGB_MEAN: tuple[float, float, float] = (0.4488, 0.4371, 0.4040)
EDSR_PRESETS: dict[str, dict[str, Any]] = {
    "edsr_baseline": {"n_resblocks": 16, "n_feats": 64, "res_scale": 1.0},
    "edsr": {"n_resblocks": 32, "n_feats": 256, "res_scale": 0.1},
}
RESIZE_MODES: tuple[str, ...] = ("sr_then_down", "down_then_sr", "keep")
SCALES: tuple[int, ...] = (1, 2, 3, 4)


class MeanShift(nn.Conv2d):
    """Fixed 1x1 conv adding ``sign * rgb_range * mean`` (the official ``common.MeanShift`` with std 1)."""

    def __init__(self, rgb_range: float, sign: int = -1, rgb_mean: tuple[float, ...] = DIV2K_RGB_MEAN) -> None:
        n = len(rgb_mean)
        super().__init__(n, n, kernel_size=1)
        with torch.no_grad():
            self.weight.copy_(torch.eye(n).view(n, n, 1, 1))
            self.bias.copy_(sign * rgb_range * torch.tensor(rgb_mean))
        self.requires_grad_(False)


class ResBlock(nn.Module):
    """conv - ReLU - conv, scaled by ``res_scale`` and added to the input (keys ``body.0``, ``body.2``)."""

    def __init__(self, n_feats: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(n_feats, n_feats), nn.ReLU(inplace=True), _conv(n_feats, n_feats))
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) * self.res_scale + x


def _conv(c_in: int, c_out: int, kernel_size: int = 3) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=True)


def _upsampler(scale: int, n_feats: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    if scale == 3:
        layers += [_conv(n_feats, 9 * n_feats), nn.PixelShuffle(3)]
    else:  # 1, 2, 4: log2(scale) stages; none at scale 1
        for _ in range(int(math.log2(scale))):
            layers += [_conv(n_feats, 4 * n_feats), nn.PixelShuffle(2)]
    return nn.Sequential(*layers)


class EDSR(nn.Module):
    """Enhanced deep residual network for single-image super-resolution (Lim et al. 2017, official key layout).

    ``forward`` takes images in [0, 1] and returns the (unclamped) [0, 1]-scaled output at ``scale`` times the size.
    """

    def __init__(
        self,
        n_resblocks: int = 16,
        n_feats: int = 64,
        scale: int = 4,
        res_scale: float = 1.0,
        rgb_range: float = 255.0,
        n_colors: int = 3,
    ) -> None:
        super().__init__()
        if scale not in SCALES:
            raise ConfigError(f"EDSR scale must be one of {SCALES}, got {scale}")
        if n_resblocks < 1 or n_feats < 1:
            raise ConfigError(f"EDSR needs n_resblocks >= 1 and n_feats >= 1, got {n_resblocks} and {n_feats}")
        self.n_resblocks, self.n_feats, self.scale = int(n_resblocks), int(n_feats), int(scale)
        self.res_scale, self.rgb_range, self.n_colors = float(res_scale), float(rgb_range), int(n_colors)
        mean = DIV2K_RGB_MEAN if n_colors == 3 else (sum(DIV2K_RGB_MEAN) / 3,) * n_colors
        self.sub_mean = MeanShift(rgb_range, -1, mean)
        self.add_mean = MeanShift(rgb_range, 1, mean)
        self.head = nn.Sequential(_conv(n_colors, n_feats))
        self.body = nn.Sequential(*[ResBlock(n_feats, res_scale) for _ in range(n_resblocks)], _conv(n_feats, n_feats))
        self.tail = nn.Sequential(_upsampler(scale, n_feats), _conv(n_feats, n_colors))

    def forward(
        self,
        x: Tensor,
        head_hook: Callable[[Tensor], Tensor] | None = None,
        body_fn: Callable[[nn.Sequential, Tensor], Tensor] | None = None,
    ) -> Tensor:
        """SR of ``x`` (N, n_colors, H, W) in [0, 1] -> (N, n_colors, scale H, scale W), [0, 1]-scaled, unclamped.

        ``head_hook`` (applied to the head features) and ``body_fn`` (replaces ``body(features)``) are the feature
        distortion points of DeepAugment; both default to the plain network.
        """
        h = self.head(self.sub_mean(x * self.rgb_range))
        if head_hook is not None:
            h = head_hook(h)
        res = self.body(h) if body_fn is None else body_fn(self.body, h)
        return self.add_mean(self.tail(res + h)) / self.rgb_range

    @property
    def tag(self) -> str:
        """The official file tag ``r{N}f{F}x{scale}``."""
        return f"r{self.n_resblocks}f{self.n_feats}x{self.scale}"


def edsr_baseline(scale: int = 4, **kwargs: Any) -> EDSR:
    """EDSR-baseline: 16 residual blocks, 64 features, res_scale 1 (1.37 M / 1.55 M / 1.52 M parameters at x2/3/4)."""
    return EDSR(**{**EDSR_PRESETS["edsr_baseline"], "scale": scale, **kwargs})


def edsr(scale: int = 4, **kwargs: Any) -> EDSR:
    """The paper's full EDSR: 32 residual blocks, 256 features, res_scale 0.1."""
    return EDSR(**{**EDSR_PRESETS["edsr"], "scale": scale, **kwargs})


# --------------------------------------------------------------------------------------------------------- loading

_WRAPPERS = ("module.", "model.")
_BASICSR = [
    (re.compile(r"^conv_first\."), "head.0."),
    (re.compile(r"^body\.(\d+)\.conv1\."), r"body.\1.body.0."),
    (re.compile(r"^body\.(\d+)\.conv2\."), r"body.\1.body.2."),
    (re.compile(r"^upsample\.(\d+)\."), r"tail.0.\1."),
    (re.compile(r"^conv_last\."), "tail.1."),
]
_BODY_INDEX = re.compile(r"^body\.(\d+)\.")


def _official_state_dict(obj: Any, path: str) -> dict[str, Tensor]:
    """The state dict in the official key layout, from any of the three accepted forms."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"EDSR checkpoint {path}: expected a state dict, got {type(obj).__name__}")
    basicsr = False
    for key in ("params_ema", "params"):  # BasicSR wraps its weights; params_ema is the better one when both exist
        if isinstance(obj.get(key), Mapping):
            obj, basicsr = obj[key], True
            break
    state = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if not state:
        raise CheckpointError(f"EDSR checkpoint {path}: no tensors found")
    stripped: dict[str, Tensor] = {}
    for key, value in state.items():
        while key.startswith(_WRAPPERS):
            key = key.split(".", 1)[1]
        stripped[key] = value
    if basicsr or "conv_first.weight" in stripped:
        n = 1 + max((int(m.group(1)) for k in stripped if (m := _BODY_INDEX.match(k))), default=-1)
        renamed = {}
        for key, value in stripped.items():
            key = re.sub(r"^conv_after_body\.", f"body.{n}.", key)
            for pattern, repl in _BASICSR:
                key = pattern.sub(repl, key)
            renamed[key] = value
        stripped = renamed
    return stripped


def infer_edsr_config(state: Mapping[str, Tensor], path: str = "<state dict>") -> dict[str, Any]:
    """N (max body index), F and n_colors (``head.0.weight``) and the scale (tail) of an official state dict.

    ``res_scale`` cannot be read from the weights: 0.1 when F == 256 (the full EDSR), else 1.
    """
    head = state.get("head.0.weight")
    if head is None or head.dim() != 4:
        raise CheckpointError(f"EDSR checkpoint {path}: no head.0.weight (first keys: {', '.join(list(state)[:3])})")
    n_feats, n_colors = int(head.shape[0]), int(head.shape[1])
    body = [int(m.group(1)) for k in state if (m := _BODY_INDEX.match(k))]
    if not body:
        raise CheckpointError(f"EDSR checkpoint {path}: no body.* keys")
    up = sorted(int(m.group(1)) for k in state if (m := re.match(r"^tail\.0\.(\d+)\.weight$", k)))
    if not up:
        scale = 1
    elif state[f"tail.0.{up[0]}.weight"].shape[0] == 9 * n_feats:
        scale = 3
    else:
        scale = 2 ** len(up)
    return {
        "n_resblocks": max(body),
        "n_feats": n_feats,
        "scale": scale,
        "res_scale": 0.1 if n_feats == 256 else 1.0,
        "n_colors": n_colors,
    }


def load_edsr(path: str | os.PathLike, **overrides: Any) -> EDSR:
    """Loads an EDSR from ``path``, inferring N, F and the scale from the weights.

    Accepts (a) the official plain state dict, (b) the same with ``module.`` / ``model.`` prefixes, (c) BasicSR's
    ``{'params' | 'params_ema': state_dict}`` with its key names (``conv_first``, ``body.i.conv1``, ...; no mean
    shifts: the DIV2K mean is used). ``overrides`` (e.g. ``res_scale``, ``rgb_range``, or the expected
    ``n_resblocks`` / ``n_feats`` / ``scale``) replace inferred values; a file that does not fit raises a one-line
    :class:`CheckpointError` naming the file and the first bad key.
    """
    path = os.fspath(path)
    obj = read_weights(path, "EDSR weights")
    state = _official_state_dict(obj, path)
    inferred = infer_edsr_config(state, path)
    kwargs = {**inferred, **{k: v for k, v in overrides.items() if v is not None}}
    model = EDSR(**kwargs)
    file_tag = f"r{inferred['n_resblocks']}f{inferred['n_feats']}x{inferred['scale']}"
    what = f"EDSR weights {path} ({file_tag}) do not fit EDSR {model.tag}"
    expected = model.state_dict()
    fixed = ("sub_mean.", "add_mean.")
    for key in expected:
        if key not in state and not key.startswith(fixed):
            raise CheckpointError(f"{what}: missing key {key}")
    for key, value in state.items():
        if key not in expected:
            raise CheckpointError(f"{what}: unexpected key {key}")
        if value.shape != expected[key].shape:
            raise CheckpointError(
                f"{what}: {key} has shape {tuple(value.shape)} in the file, {tuple(expected[key].shape)} in the model"
            )
    model.load_state_dict(state, strict=False)  # only absent mean shifts (BasicSR) keep their DIV2K defaults
    return model


# --------------------------------------------------------------------------------------------- corruption network


class CorruptionNetwork(nn.Module):
    """An EDSR as an image-to-image map X -> X (AdA §2's corruption network c_phi); output at the input size.

    ``resize`` decides how EDSR's upscaling is undone (reference §1.10):

    - ``sr_then_down`` (default): SR the input to ``scale`` x its size, then area-downsample back; about the identity
      for pretrained weights at beta = 0;
    - ``down_then_sr``: bicubic (antialiased) downsample by 1/scale, SR back, bilinear resize to the exact input size
      when it is not a multiple of the scale; lossy even at beta = 0;
    - ``keep``: return the upscaled output (DeepAugment's offline setting). AdA needs same-size outputs and rejects it.

    At scale 1 all three are the same. Grayscale inputs (C = 1) are replicated to 3 channels and the output is the
    channel mean. With ``clamp`` (constructor default, overridable per call) the output is clamped to [0, 1], which
    AdA's SSIM guard needs; ``clamp=False`` gives the raw network output (e.g. for gradients through saturated
    pixels).
    """

    def __init__(self, edsr: EDSR, resize: str = "sr_then_down", clamp: bool = True) -> None:
        super().__init__()
        if resize not in RESIZE_MODES:
            raise ConfigError(f"corruption_net.resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
        self.edsr = edsr
        self.resize = resize
        self.clamp = clamp

    @property
    def scale(self) -> int:
        return self.edsr.scale

    def forward(self, x: Tensor, clamp: bool | None = None, **edsr_kwargs: Any) -> Tensor:
        """c_phi(x) for images (N, C, H, W) in [0, 1], C in {1, 3}; ``edsr_kwargs`` go to :meth:`EDSR.forward`."""
        gray = x.shape[1] == 1 and self.edsr.n_colors != 1
        if gray:
            x = x.expand(-1, self.edsr.n_colors, -1, -1)
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
        if self.clamp if clamp is None else clamp:
            y = y.clamp(0.0, 1.0)
        return y

    def perturbable_parameters(self) -> dict[str, Tensor]:
        """Every conv weight and bias except the fixed mean shifts, named relative to this module.

        ``torch.func.functional_call(net, {**params, name: p + beta}, (x,))`` evaluates c_{phi+beta}(x). 74 tensors
        (37 convs) for EDSR-baseline x4.
        """
        fixed = ("edsr.sub_mean.", "edsr.add_mean.")
        return {name: p for name, p in self.named_parameters() if not name.startswith(fixed)}


_CFG_KEYS = {"variant", "scale", "weights", "resize", "n_resblocks", "n_feats", "res_scale", "rgb_range"}
_ARCH_KEYS = ("n_resblocks", "n_feats", "res_scale", "rgb_range")


def build_edsr(cfg: Mapping[str, Any], node: str = "corruption_net") -> EDSR:
    """The EDSR of a config: ``variant`` (``edsr_baseline`` | ``edsr`` | ``custom``), ``scale``, ``weights`` (path
    or null: random init), optional ``n_resblocks``, ``n_feats``, ``res_scale``, ``rgb_range`` (null: the preset's
    value; ``custom`` needs ``n_resblocks`` and ``n_feats`` unless the weights give them). Not frozen."""
    variant = cfg.get("variant", "edsr_baseline")
    arch = {k: cfg.get(k) for k in _ARCH_KEYS}
    if variant in EDSR_PRESETS:
        arch = {**EDSR_PRESETS[variant], **{k: v for k, v in arch.items() if v is not None}}
    elif variant == "custom":
        if (arch["n_resblocks"] is None or arch["n_feats"] is None) and not cfg.get("weights"):
            raise ConfigError(f"{node}.variant=custom needs n_resblocks and n_feats (or weights)")
    else:
        raise ConfigError(f"{node}.variant must be edsr_baseline, edsr or custom, got {variant!r}")
    arch["scale"] = cfg.get("scale")
    arch = {k: v for k, v in arch.items() if v is not None}
    weights = cfg.get("weights")
    return load_edsr(str(weights), **arch) if weights else EDSR(**arch)


def build_corruption_network(cfg: Mapping[str, Any]) -> CorruptionNetwork:
    """A frozen (``requires_grad_(False)``, eval mode) corruption network from the ``corruption_net`` config values.

    Keys: those of :func:`build_edsr` and ``resize`` (:class:`CorruptionNetwork`). ``weights: null`` gives a
    randomly initialised network and logs a warning.
    """
    cfg = dict(cfg)
    unknown = set(cfg) - _CFG_KEYS
    if unknown:
        raise ConfigError(
            f"unknown corruption_net keys: {', '.join(sorted(unknown))} (known: {', '.join(sorted(_CFG_KEYS))})"
        )
    net = build_edsr(cfg)
    if not cfg.get("weights"):
        log.warning(
            "corruption network %s (%s) is randomly initialised: set corruption_net.weights",
            cfg.get("variant"),
            net.tag,
        )
    corruption = CorruptionNetwork(net, resize=cfg.get("resize") or "sr_then_down")
    corruption.requires_grad_(False)
    return corruption.eval()
