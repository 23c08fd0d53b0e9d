"""Frost textures of ImageNet-C: where to find them, decoding, the reference's resizing, and a per-device cache.

The ``frost`` corruption overlays crops of six photographs of frost (``frost1.png`` ... ``frost6.jpg``) that ship with
``hendrycks/robustness`` and, with identical files, with the ``imagecorruptions`` packages. They are not part of
``robustnoise``. The folder is looked up in this order:

1. the ``frost_dir`` argument of :func:`frost_textures`,
2. the folder set with :func:`set_frost_dir`,
3. the ``ROBUSTNOISE_FROST_DIR`` environment variable,
4. the ``frost`` folder of an installed ``imagecorruptions`` package (``pip install imagecorruptions-imaug==1.1.5``),
   found without importing that package.

The reference picks among the first five textures only (``np.random.randint(5)``), so only those five are read.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from robustnoise.utils.errors import RobustnoiseError

__all__ = [
    "FROST_ENV_VAR",
    "FROST_FILES",
    "NUM_REFERENCE_TEXTURES",
    "frost_textures",
    "get_frost_dir",
    "resize_bilinear_like_cv2",
    "set_frost_dir",
]

FROST_ENV_VAR = "ROBUSTNOISE_FROST_DIR"
FROST_FILES: tuple[str, ...] = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
NUM_REFERENCE_TEXTURES = 5
"""``make_imagenet_c.py`` draws ``np.random.randint(5)``: frost6.jpg is never used."""

_MISSING_MESSAGE = (
    "frost textures not found: pip install imagecorruptions-imaug==1.1.5, or set "
    f"{FROST_ENV_VAR} to a folder with frost1.png ... frost6.jpg"
)

_configured_dir: Path | None = None


def set_frost_dir(path: str | os.PathLike[str] | None) -> None:
    """Use the textures in ``path`` from now on (``None``: back to the environment variable / installed package)."""
    global _configured_dir
    _configured_dir = None if path is None else Path(path).expanduser()


def _package_dir() -> Path | None:
    """The ``frost`` folder of an installed ``imagecorruptions`` package, located without importing it (its import
    pulls in OpenCV, numba and scikit-image)."""
    try:
        spec = importlib.util.find_spec("imagecorruptions")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "frost"
        if candidate.is_dir():
            return candidate
    return None


def get_frost_dir(frost_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder the textures are read from (see the module docstring for the order).

    Raises:
        RobustnoiseError: no folder is configured and no ``imagecorruptions`` package is installed, or the chosen
            folder lacks one of the five textures the reference uses.
    """
    if frost_dir is not None:
        folder, source = Path(frost_dir).expanduser(), "frost_dir"
    elif _configured_dir is not None:
        folder, source = _configured_dir, "set_frost_dir()"
    elif os.environ.get(FROST_ENV_VAR):
        folder, source = Path(os.environ[FROST_ENV_VAR]).expanduser(), FROST_ENV_VAR
    else:
        package = _package_dir()
        if package is None:
            raise RobustnoiseError(_MISSING_MESSAGE)
        folder, source = package, "the imagecorruptions package"
    missing = [name for name in FROST_FILES[:NUM_REFERENCE_TEXTURES] if not (folder / name).is_file()]
    if missing:
        raise RobustnoiseError(
            f"frost textures not found: {folder} (from {source}) lacks {', '.join(missing)}; "
            f"point {FROST_ENV_VAR} to a folder with frost1.png ... frost6.jpg"
        )
    return folder


@functools.lru_cache(maxsize=8)
def _decode(folder: Path) -> tuple[Tensor, ...]:
    """The five reference textures as uint8 RGB tensors (3, h, w); PIL decodes them exactly like ``cv2.imread``."""
    from PIL import Image

    textures = []
    for name in FROST_FILES[:NUM_REFERENCE_TEXTURES]:
        with Image.open(folder / name) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.uint8)  # PNGs are RGBA: alpha dropped, as cv2 does
        textures.append(torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous())
    return tuple(textures)


def _linear_taps(in_size: int, out_size: int, scale: float) -> tuple[Tensor, Tensor]:
    """OpenCV INTER_LINEAR taps: (out, 2) source indices and 11-bit fixed-point weights.

    As in ``cv::resize``: the source position ``(d + 0.5) / scale - 0.5`` is rounded to float32, positions outside
    the image are clamped to the edge pixel, and each weight is rounded to 1/2048 separately (round half to even).
    """
    index = np.empty((out_size, 2), dtype=np.int64)
    weight = np.empty((out_size, 2), dtype=np.int64)
    inverse = 1.0 / scale
    for d in range(out_size):
        position = np.float32((d + 0.5) * inverse - 0.5)
        start = int(np.floor(position))
        frac = np.float32(position - np.float32(start))
        if start < 0:
            start, frac = 0, np.float32(0.0)
        if start >= in_size - 1:
            start, frac = in_size - 1, np.float32(0.0)
        index[d] = (start, min(start + 1, in_size - 1))
        weight[d] = (np.rint((np.float32(1.0) - frac) * np.float32(2048.0)), np.rint(frac * np.float32(2048.0)))
    return torch.from_numpy(index), torch.from_numpy(weight)


def resize_bilinear_like_cv2(image: Tensor, scale: float) -> Tensor:
    """``cv2.resize(image, (0, 0), fx=scale, fy=scale)`` (INTER_LINEAR) for a uint8 tensor (C, h, w).

    Reproduces OpenCV's 8-bit integer path: fixed-point horizontal pass, then the SIMD vertical pass
    ``((S0 >> 4) * b0 >> 16) + ((S1 >> 4) * b1 >> 16)`` with a rounding shift by 2. Bit-exact with OpenCV 5 for the
    benchmark scales 0.2 and 0.3 on the frost textures (``scale = 0.2`` samples every fifth pixel).
    """
    if image.dtype != torch.uint8 or image.dim() != 3:
        raise ValueError(f"expected a uint8 tensor (C, h, w), got {image.dtype} {tuple(image.shape)}")
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
    device: torch.device | str = "cpu",
    scale: float = 1.0,
    frost_dir: str | os.PathLike[str] | None = None,
) -> tuple[Tensor, ...]:
    """The five reference frost textures, uint8 RGB (3, h, w), resized by ``scale`` as ``cv2.resize`` does.

    ImageNet-C crops straight from the textures (``scale = 1``), CIFAR-10-C first resizes them by 0.2 and
    Tiny-ImageNet-C by 0.3. Decoded and resized textures are cached per folder, scale and device.
    """
    return _prepared(get_frost_dir(frost_dir).resolve(), float(scale), torch.device(device))


@functools.lru_cache(maxsize=16)
def _prepared(folder: Path, scale: float, device: torch.device) -> tuple[Tensor, ...]:
    textures = _decode(folder)
    if scale != 1.0:
        textures = tuple(resize_bilinear_like_cv2(texture, scale) for texture in textures)
    return tuple(texture.to(device) for texture in textures)
