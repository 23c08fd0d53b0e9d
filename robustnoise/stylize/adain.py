"""AdaIN style transfer (Huang & Belongie 2017) as used for Stylized-ImageNet (Geirhos et al. 2019; ANT+SIN).

The networks are the "vgg_normalised" VGG-19 encoder up to relu4_1 and the AdaIN decoder, built as ``nn.Sequential``s
whose integer module indices match the released ``vgg_normalised.pth`` / ``decoder.pth`` (naoto0804/pytorch-AdaIN,
converted from the Torch7 ``vgg_normalised.t7`` / ``decoder.t7``), so those files load with ``load_state_dict``.

Encoder (31 modules; the released file holds the full 53-module VGG-19 up to relu5_4, of which the first 31 are kept):

====  ==========================================  =========================
index module                                      state-dict keys
====  ==========================================  =========================
0     Conv 1x1 3->3 (input preprocessing)         ``0.weight``, ``0.bias``
1-3   pad, conv1_1 3->64, ReLU                    ``2.*``
4-6   pad, conv1_2 64->64, ReLU                   ``5.*``
7     MaxPool 2x2 (ceil_mode)
8-13  pad, conv2_1 64->128, ReLU, pad, conv2_2    ``9.*``, ``12.*``
14    MaxPool
15-26 conv3_1 128->256, conv3_2..3_4 256->256     ``16.*``, ``19.*``, ``22.*``, ``25.*``
27    MaxPool
28-30 pad, conv4_1 256->512, ReLU (relu4_1)       ``29.*``
====  ==========================================  =========================

Decoder (29 modules, no final activation): conv 512->256 at index 1, nearest x2 at 3, three 256->256 convs at 5, 8,
11, 256->128 at 14, x2 at 16, 128->128 at 18, 128->64 at 21, x2 at 23, 64->64 at 25, 64->3 at 28; every conv is
preceded by a 1-pixel reflection pad and (except the last) followed by a ReLU.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robustnoise.utils.errors import CheckpointError, ConfigError, DatasetNotFoundError

__all__ = [
    "ENCODER_MODULES",
    "STYLE_EXTENSIONS",
    "AdaINStylizer",
    "adain",
    "build_decoder",
    "build_encoder",
    "feature_mean_std",
    "load_style_images",
    "style_files",
]

ENCODER_MODULES = 31  # relu4_1 is module 30 of vgg_normalised
STYLE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
EPS = 1e-5  # added to the variance (reference ``calc_mean_std``)

# (in, out) of each 3x3 conv; "M" = max-pool. Module 0 (the 1x1 preprocessing conv) precedes this list.
_ENCODER_PLAN: tuple[Any, ...] = (
    (3, 64), (64, 64), "M",
    (64, 128), (128, 128), "M",
    (128, 256), (256, 256), (256, 256), (256, 256), "M",
    (256, 512),
)  # fmt: skip
# "U" = nearest-neighbour x2 upsampling; the last conv has no ReLU.
_DECODER_PLAN: tuple[Any, ...] = (
    (512, 256), "U",
    (256, 256), (256, 256), (256, 256), (256, 128), "U",
    (128, 128), (128, 64), "U",
    (64, 64), (64, 3),
)  # fmt: skip


def _conv_block(c_in: int, c_out: int, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, 3)]
    return [*layers, nn.ReLU()] if relu else layers


def build_encoder() -> nn.Sequential:
    """The vgg_normalised VGG-19 truncated at relu4_1 (31 modules, input RGB in [0, 1]; ref. §5.1)."""
    layers: list[nn.Module] = [nn.Conv2d(3, 3, 1)]
    for item in _ENCODER_PLAN:
        layers += [nn.MaxPool2d(2, 2, 0, ceil_mode=True)] if item == "M" else _conv_block(*item)
    assert len(layers) == ENCODER_MODULES
    return nn.Sequential(*layers)


def build_decoder() -> nn.Sequential:
    """The AdaIN decoder: relu4_1 features (512 channels) back to an RGB image (29 modules; ref. §5.1)."""
    layers: list[nn.Module] = []
    for i, item in enumerate(_DECODER_PLAN):
        last = i == len(_DECODER_PLAN) - 1
        layers += [nn.Upsample(scale_factor=2, mode="nearest")] if item == "U" else _conv_block(*item, relu=not last)
    return nn.Sequential(*layers)


def feature_mean_std(feat: Tensor, eps: float = EPS) -> tuple[Tensor, Tensor]:
    """Per sample and channel mean and std = sqrt(unbiased variance + eps) of (B, C, H, W) features -> (B, C) each."""
    flat = feat.flatten(2)
    correction = 1 if flat.shape[-1] > 1 else 0  # a 1x1 map has no unbiased variance
    var = flat.var(dim=2, correction=correction)
    return flat.mean(dim=2), (var + eps).sqrt()


def adain(content_feat: Tensor, style_mean: Tensor, style_std: Tensor, eps: float = EPS) -> Tensor:
    """Adaptive instance normalisation: content features re-normalised to the style's (B, C) mean and std."""
    mean, std = feature_mean_std(content_feat, eps)
    normalised = (content_feat - mean[..., None, None]) / std[..., None, None]
    return normalised * style_std[..., None, None] + style_mean[..., None, None]


def style_files(style_dir: str | os.PathLike[str]) -> list[Path]:
    """All image files under ``style_dir`` (recursively), sorted; one-line error when there are none."""
    root = Path(style_dir)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in STYLE_EXTENSIONS and p.is_file())
    if not files:
        raise DatasetNotFoundError(
            f"AdaIN style images not found at {root}; expected image files <style_dir>/**/*.{{jpg,png}} (paintings)"
        )
    return files


def load_style_images(files: Sequence[Path], size: int, batch_size: int = 32) -> Iterator[Tensor]:
    """Style images as float RGB batches (B, 3, size, size): centre square crop, antialiased resize (SIN prep)."""
    from PIL import Image
    from torchvision.transforms import v2

    for start in range(0, len(files), batch_size):
        batch = []
        for path in files[start : start + batch_size]:
            with Image.open(path) as img:
                image = v2.functional.to_image(img.convert("RGB"))
            side = min(image.shape[-2:])
            image = v2.functional.center_crop(image, [side, side])
            image = v2.functional.resize(image, [size, size], antialias=True)
            batch.append(v2.functional.to_dtype(image, torch.float32, scale=True).as_subclass(Tensor))
        yield torch.stack(batch)


def _load_weights(path: str | os.PathLike[str], what: str) -> dict[str, Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"AdaIN {what} weights not found at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"cannot read AdaIN {what} weights {path}: {first}") from None
    if not isinstance(state, dict) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not an AdaIN {what} state dict (expected a dict of tensors)")
    return state


def _load_into(module: nn.Module, state: dict[str, Tensor], path: Any, what: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        missing = sorted(set(module.state_dict()) - set(state))[:3]
        unexpected = sorted(set(state) - set(module.state_dict()))[:3]
        detail = f"missing {missing}, unexpected {unexpected}" if missing or unexpected else "tensor shapes differ"
        expected = "vgg_normalised.pth" if what == "encoder" else "decoder.pth"
        raise CheckpointError(f"{path} does not fit the AdaIN {what} ({expected} layout): {detail}") from err


class AdaINStylizer(nn.Module):
    """AdaIN stylization with a bank of precomputed style statistics (relu4_1 mean/std per style image).

    ``forward(content)`` gives every content image one random style of the bank and returns decoded images in
    [0, 1] (ref. §5.1: output = decoder(alpha * AdaIN(c, s) + (1 - alpha) * c), clamped as ``save_image`` does).
    Grayscale content is replicated to RGB and the result's channel mean returned as one channel.
    """

    def __init__(self, encoder: nn.Sequential | None = None, decoder: nn.Sequential | None = None) -> None:
        super().__init__()
        self.encoder = encoder if encoder is not None else build_encoder()
        self.decoder = decoder if decoder is not None else build_decoder()
        self.requires_grad_(False)
        self.eval()
        self.register_buffer("style_mean", torch.zeros(0, 512), persistent=False)
        self.register_buffer("style_std", torch.zeros(0, 512), persistent=False)

    @classmethod
    def from_files(
        cls,
        encoder_path: str | os.PathLike[str],
        decoder_path: str | os.PathLike[str],
        device: str | torch.device = "cpu",
    ) -> AdaINStylizer:
        """Load the released ``vgg_normalised.pth`` (first 31 modules kept) and ``decoder.pth``."""
        stylizer = cls()
        encoder_state = _load_weights(encoder_path, "encoder")
        kept = {k: v for k, v in encoder_state.items() if k.split(".")[0].isdigit() and int(k.split(".")[0]) < 31}
        _load_into(stylizer.encoder, kept, encoder_path, "encoder")
        _load_into(stylizer.decoder, _load_weights(decoder_path, "decoder"), decoder_path, "decoder")
        return stylizer.to(device)

    @property
    def num_styles(self) -> int:
        return int(self.style_mean.shape[0])

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """relu4_1 features of RGB images in [0, 1]."""
        return self.encoder(images.to(self.style_mean.dtype))

    @torch.no_grad()
    def add_styles(self, images: Tensor) -> None:
        """Append the relu4_1 statistics of a batch of RGB style images (B, 3, H, W) in [0, 1] to the bank."""
        mean, std = feature_mean_std(self.encode(images.to(self.style_mean.device)))
        self.style_mean = torch.cat([self.style_mean, mean])
        self.style_std = torch.cat([self.style_std, std])

    def load_style_folder(
        self, style_dir: str | os.PathLike[str], size: int = 224, max_styles: int | None = None, batch_size: int = 32
    ) -> list[Path]:
        """Encode every image under ``style_dir`` (the first ``max_styles`` in sorted order) once; returns the files."""
        files = style_files(style_dir)[: max_styles or None]
        for batch in load_style_images(files, size, batch_size):
            self.add_styles(batch)
        return files

    def pick_styles(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` random style indices (on the generator's device; CPU when none is given)."""
        if self.num_styles == 0:
            raise ConfigError("the AdaIN style bank is empty: load style images first (style_dir)")
        device = generator.device if generator is not None else torch.device("cpu")
        return torch.randint(self.num_styles, (n,), generator=generator, device=device)

    @torch.no_grad()
    def forward(
        self,
        content: Tensor,
        generator: torch.Generator | None = None,
        alpha: float = 1.0,
        style_index: Tensor | None = None,
    ) -> Tensor:
        """Stylize content images (B, 1|3, H, W) in [0, 1], one random (or the given) style per image."""
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"AdaIN alpha must be in [0, 1], got {alpha}")
        batch, channels, height, width = content.shape
        if style_index is None:
            style_index = self.pick_styles(batch, generator)
        style_index = style_index.to(self.style_mean.device)
        rgb = content.expand(-1, 3, -1, -1) if channels == 1 else content
        feats = self.encode(rgb.to(self.style_mean.device))
        target = adain(feats, self.style_mean[style_index], self.style_std[style_index])
        if alpha < 1.0:
            target = alpha * target + (1.0 - alpha) * feats
        # ceil-mode pooling then three x2 upsamplings: the output can be up to 7 px larger than the input
        out = self.decoder(target)[..., :height, :width].clamp(0.0, 1.0)
        if channels == 1:
            out = out.mean(dim=1, keepdim=True)
        return out.to(device=content.device, dtype=content.dtype)
