"""AdaIN style transfer (Huang & Belongie 2017) for Stylized-ImageNet (Geirhos et al. 2019); modules as in the released
``vgg_normalised.pth`` / ``decoder.pth`` (naoto0804/pytorch-AdaIN)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.datasets.folder import IMG_EXTENSIONS, pil_loader
from torchvision.transforms import v2

from robustnoise.models.weights import extract_state_dict, load_checked, read_weights
from robustnoise.utils.errors import DatasetNotFoundError

EPS = 1e-5  # added to the variance (reference ``calc_mean_std``)

# (in, out): reflection pad, 3x3 conv, ReLU; "M": 2x2 max-pool (ceil mode); "U": nearest x2 upsampling.
_ENCODER_PLAN: tuple[Any, ...] = (
    (3, 64), (64, 64), "M",
    (64, 128), (128, 128), "M",
    (128, 256), (256, 256), (256, 256), (256, 256), "M",
    (256, 512),
)  # fmt: skip
_DECODER_PLAN: tuple[Any, ...] = (
    (512, 256), "U",
    (256, 256), (256, 256), (256, 256), (256, 128), "U",
    (128, 128), (128, 64), "U",
    (64, 64), (64, 3),
)  # fmt: skip


def _build(plan: tuple[Any, ...], layers: list[nn.Module]) -> nn.Sequential:
    for item in plan:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2, 0, ceil_mode=True))
        elif item == "U":
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        else:
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(*item, 3), nn.ReLU()]
    return nn.Sequential(*layers)


def build_encoder() -> nn.Sequential:
    """The vgg_normalised VGG-19 truncated at relu4_1 (31 modules, input RGB in [0, 1]; ref. §5.1)."""
    return _build(_ENCODER_PLAN, [nn.Conv2d(3, 3, 1)])  # module 0: the 1x1 preprocessing conv


def build_decoder() -> nn.Sequential:
    """The AdaIN decoder: relu4_1 features (512 channels) back to an RGB image (29 modules; ref. §5.1)."""
    return _build(_DECODER_PLAN, [])[:-1]  # no ReLU after the last conv


def feature_mean_std(feat: Tensor, eps: float = EPS) -> tuple[Tensor, Tensor]:
    """Per sample and channel mean and std = sqrt(unbiased variance + eps) of (B, C, H, W) features -> (B, C) each."""
    flat = feat.flatten(2)
    var = flat.var(dim=2, correction=int(flat.shape[-1] > 1))  # a 1x1 map has no unbiased variance
    return flat.mean(dim=2), (var + eps).sqrt()


def adain(content_feat: Tensor, style_mean: Tensor, style_std: Tensor, eps: float = EPS) -> Tensor:
    """Adaptive instance normalisation: content features re-normalised to the style's (B, C) mean and std."""
    mean, std = feature_mean_std(content_feat, eps)
    normalised = (content_feat - mean[..., None, None]) / std[..., None, None]
    return normalised * style_std[..., None, None] + style_mean[..., None, None]


def style_files(style_dir: str | os.PathLike[str]) -> list[Path]:
    """All image files under ``style_dir`` (recursively), sorted; one-line error when there are none."""
    root = Path(style_dir)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMG_EXTENSIONS and p.is_file())
    if not files:
        raise DatasetNotFoundError(
            f"AdaIN style images not found at {root}; expected image files <style_dir>/**/*.{{jpg,png}} (paintings)"
        )
    return files


def _load(module: nn.Sequential, path: str | os.PathLike[str], what: str, released: str) -> None:
    """Load the released file ``path`` into ``module``, keeping the modules ``module`` has (the encoder's first 31)."""
    state = extract_state_dict(read_weights(path, f"AdaIN {what} weights"), (), f"AdaIN {what} weights {path}")
    kept = {k: v for k, v in state.items() if not k.split(".")[0].isdigit() or int(k.split(".")[0]) < len(module)}
    load_checked(module, kept, f"{path} does not fit the AdaIN {what} ({released} layout)")


class AdaINStylizer(nn.Module):
    """Per image a random style of the bank: decoder(alpha AdaIN(c, s) + (1 - alpha) c) in [0, 1] (ref. §5.1)."""

    def __init__(self, encoder: nn.Sequential | None = None, decoder: nn.Sequential | None = None) -> None:
        super().__init__()
        self.encoder = encoder if encoder is not None else build_encoder()
        self.decoder = decoder if decoder is not None else build_decoder()
        self.requires_grad_(False).eval()
        self.register_buffer("style_mean", torch.zeros(0, 512), persistent=False)
        self.register_buffer("style_std", torch.zeros(0, 512), persistent=False)

    @classmethod
    def from_files(cls, encoder_path: str | os.PathLike[str], decoder_path: str | os.PathLike[str]) -> AdaINStylizer:
        """Load the released ``vgg_normalised.pth`` (first 31 modules kept) and ``decoder.pth``."""
        stylizer = cls()
        _load(stylizer.encoder, encoder_path, "encoder", "vgg_normalised.pth")
        _load(stylizer.decoder, decoder_path, "decoder", "decoder.pth")
        return stylizer

    @property
    def num_styles(self) -> int:
        return int(self.style_mean.shape[0])

    @torch.no_grad()
    def load_style_folder(
        self, style_dir: str | os.PathLike[str], size: int = 224, max_styles: int | None = None, batch_size: int = 32
    ) -> list[Path]:
        """Add the relu4_1 statistics of ``style_dir``'s images (SIN's crop, resize) to the bank."""
        files = style_files(style_dir)[: max_styles or None]
        stats = [(self.style_mean, self.style_std)]  # one concatenation at the end, not one per batch
        for start in range(0, len(files), batch_size):
            batch = []
            for path in files[start : start + batch_size]:
                image = v2.functional.to_image(pil_loader(path))
                image = v2.functional.center_crop(image, [min(image.shape[-2:])] * 2)
                image = v2.functional.resize(image, [size, size], antialias=True)
                batch.append(v2.functional.to_dtype(image, torch.float32, scale=True).as_subclass(Tensor))
            stats.append(feature_mean_std(self.encoder(torch.stack(batch).to(self.style_mean))))
        self.style_mean, self.style_std = (torch.cat(column) for column in zip(*stats))
        return files

    def pick_styles(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` random style indices (on the generator's device; CPU when none is given)."""
        return torch.randint(self.num_styles, (n,), generator=generator, device=getattr(generator, "device", None))

    @torch.no_grad()
    def forward(
        self,
        content: Tensor,
        generator: torch.Generator | None = None,
        alpha: float = 1.0,
        style_index: Tensor | None = None,
    ) -> Tensor:
        """Stylize content images (B, 1|3, H, W) in [0, 1], one random (or the given) style per image."""
        batch, channels, height, width = content.shape
        picks = (self.pick_styles(batch, generator) if style_index is None else style_index).to(self.style_mean.device)
        feats = self.encoder(content.expand(-1, 3, -1, -1).to(self.style_mean))  # gray through RGB
        target = adain(feats, self.style_mean[picks], self.style_std[picks])
        if alpha < 1.0:  # AdaIN's content-style trade-off
            target = torch.lerp(feats, target, alpha)
        # ceil-mode pooling then three x2 upsamplings: the output can be up to 7 px larger than the input
        out = self.decoder(target)[..., :height, :width].clamp(0.0, 1.0)
        if channels == 1:
            out = out.mean(dim=1, keepdim=True)
        return out.to(device=content.device, dtype=content.dtype)
