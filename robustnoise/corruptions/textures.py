"""Frost textures of ImageNet-C: where to find them, decoding, the reference's resizing, and a per-device cache.

``frost`` overlays crops of six photographs of frost (``frost1.png`` ... ``frost6.jpg``) from ``hendrycks/robustness``,
shipped identically with the ``imagecorruptions`` packages, not with ``robustnoise``. The folder is, in this order:
the ``frost_dir`` argument of :func:`frost_textures`, the folder set with :func:`set_frost_dir`, the
``ROBUSTNOISE_FROST_DIR`` environment variable, the ``frost`` folder of an installed ``imagecorruptions`` package.
The reference draws ``np.random.randint(5)``: only the first five textures are read.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from robustnoise.utils.errors import RobustnoiseError

__all__ = [
    "FROST_ENV_VAR",
    "FROST_FILES",
    "frost_textures",
    "get_frost_dir",
    "resize_bilinear_like_cv2",
    "set_frost_dir",
]

FROST_ENV_VAR = "ROBUSTNOISE_FROST_DIR"
FROST_FILES: tuple[str, ...] = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
_USED = FROST_FILES[:5]  # make_imagenet_c.py draws np.random.randint(5): frost6.jpg is never used

_configured_dir: Path | None = None


def set_frost_dir(path: str | os.PathLike[str] | None) -> None:
    """Use the textures in ``path`` from now on (``None``: back to the environment variable / installed package)."""
    global _configured_dir
    _configured_dir = None if path is None else Path(path).expanduser()


def _package_dir() -> Path | None:
    """The ``frost`` folder of an installed ``imagecorruptions``, found without importing it (that pulls in OpenCV,
    numba and scikit-image)."""
    spec = importlib.util.find_spec("imagecorruptions")
    folders = [Path(p) / "frost" for p in (spec.submodule_search_locations or [])] if spec else []
    return next((folder for folder in folders if folder.is_dir()), None)


def get_frost_dir(frost_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder the textures are read from (order: module docstring); :class:`RobustnoiseError` if there is none or
    it lacks one of the five textures the reference uses."""
    if frost_dir is not None:
        folder, source = Path(frost_dir).expanduser(), "frost_dir"
    elif _configured_dir is not None:
        folder, source = _configured_dir, "set_frost_dir()"
    elif os.environ.get(FROST_ENV_VAR):
        folder, source = Path(os.environ[FROST_ENV_VAR]).expanduser(), FROST_ENV_VAR
    elif (package := _package_dir()) is not None:
        folder, source = package, "the imagecorruptions package"
    else:
        raise RobustnoiseError(
            f"frost textures not found: pip install imagecorruptions-imaug==1.1.5, or set {FROST_ENV_VAR} to a folder "
            "with frost1.png ... frost6.jpg"
        )
    missing = [name for name in _USED if not (folder / name).is_file()]
    if missing:
        raise RobustnoiseError(
            f"frost textures not found: {folder} (from {source}) lacks {', '.join(missing)}; "
            f"point {FROST_ENV_VAR} to a folder with frost1.png ... frost6.jpg"
        )
    return folder


@functools.lru_cache(maxsize=8)
def _decode(folder: Path) -> tuple[Tensor, ...]:
    """The five reference textures as uint8 RGB tensors (3, h, w); PIL decodes them exactly like ``cv2.imread``."""
    textures = []
    for name in _USED:
        with Image.open(folder / name) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.uint8)  # PNGs are RGBA: alpha dropped, as cv2 does
        textures.append(torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous())
    return tuple(textures)


def _linear_taps(in_size: int, out_size: int, scale: float) -> tuple[Tensor, Tensor]:
    """OpenCV INTER_LINEAR taps as in ``cv::resize``: (out, 2) source indices and 11-bit fixed-point weights, from the
    source position ``(d + 0.5) / scale - 0.5`` rounded to float32, clamped to the edge pixels, each weight rounded
    to 1/2048 (half to even)."""
    position = ((np.arange(out_size) + 0.5) * (1.0 / scale) - 0.5).astype(np.float32)
    start = np.floor(position).astype(np.int64)
    frac = np.where((start < 0) | (start >= in_size - 1), np.float32(0.0), position - start.astype(np.float32))
    start = start.clip(0, in_size - 1)
    index = np.stack([start, np.minimum(start + 1, in_size - 1)], 1)
    weight = np.rint(np.stack([np.float32(1.0) - frac, frac], 1) * np.float32(2048.0)).astype(np.int64)
    return torch.from_numpy(index), torch.from_numpy(weight)


def resize_bilinear_like_cv2(image: Tensor, scale: float) -> Tensor:
    """``cv2.resize(image, (0, 0), fx=scale, fy=scale)`` (INTER_LINEAR) of a uint8 tensor (C, h, w).

    OpenCV's 8-bit integer path: fixed-point horizontal pass, then the SIMD vertical pass
    ``((S0 >> 4) * b0 >> 16) + ((S1 >> 4) * b1 >> 16)`` with a rounding shift by 2. Bit-exact with OpenCV 5 for the
    benchmark scales 0.2 and 0.3 on the frost textures.
    """
    _, height, width = image.shape
    out_h, out_w = round(height * scale), round(width * scale)  # cv2's saturate_cast<int>: round half to even
    if out_h < 1 or out_w < 1:
        raise ValueError(f"scale {scale} shrinks a {height}x{width} texture to nothing")
    rows, row_w = _linear_taps(height, out_h, scale)
    cols, col_w = _linear_taps(width, out_w, scale)
    src = image.to(torch.int64)
    horizontal = src[:, :, cols[:, 0]] * col_w[:, 0] + src[:, :, cols[:, 1]] * col_w[:, 1]  # (C, h, out_w)
    top = ((horizontal[:, rows[:, 0], :] >> 4) * row_w[:, 0, None]) >> 16
    bottom = ((horizontal[:, rows[:, 1], :] >> 4) * row_w[:, 1, None]) >> 16
    return ((top + bottom + 2) >> 2).clamp_(0, 255).to(torch.uint8)


def frost_textures(
    device: torch.device | str = "cpu", scale: float = 1.0, frost_dir: str | os.PathLike[str] | None = None
) -> tuple[Tensor, ...]:
    """The five reference frost textures, uint8 RGB (3, h, w), resized by ``scale`` as ``cv2.resize`` does
    (ImageNet-C: 1, CIFAR-10-C: 0.2, Tiny-ImageNet-C: 0.3); cached per folder, scale and device."""
    return _prepared(get_frost_dir(frost_dir).resolve(), float(scale), torch.device(device))


@functools.lru_cache(maxsize=16)
def _prepared(folder: Path, scale: float, device: torch.device) -> tuple[Tensor, ...]:
    return tuple((t if scale == 1.0 else resize_bilinear_like_cv2(t, scale)).to(device) for t in _decode(folder))
