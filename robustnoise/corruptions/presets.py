"""Every corruption name, id, seed key and per-benchmark severity table (the one module that owns them).

The tables are the parameters of Hendrycks & Dietterich (2019), "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations", as written in ``hendrycks/robustness`` ``ImageNet-C/create_c/make_imagenet_c.py``
(preset ``imagenet``, 224 px), ``make_cifar_c.py`` (``cifar``: CIFAR-10-C and CIFAR-100-C, 32 px) and
``make_tinyimagenet_c.py`` (``tinyimagenet``, 64 px). Tuple fields are named after their role in those scripts.
"""

from __future__ import annotations

import math
import operator
from collections import namedtuple
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from robustnoise.utils.errors import RobustnoiseError

BENCHMARK_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
"""The 15 corruptions averaged in mCE, in the canonical order of the AlexNet error table."""

HOLDOUT_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
"""The 4 extra ("validation") corruptions, not part of mCE."""

NOISE_CORRUPTIONS: tuple[str, ...] = ("gaussian_noise", "shot_noise", "impulse_noise")
ALL_CORRUPTIONS: tuple[str, ...] = BENCHMARK_CORRUPTIONS + HOLDOUT_CORRUPTIONS

CORRUPTION_GROUPS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "noise": NOISE_CORRUPTIONS,
        "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
        "weather": ("snow", "frost", "fog", "brightness"),
        "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
        "extra": HOLDOUT_CORRUPTIONS,
    }
)
"""Groups as in the ImageNet-C tar files; ``extra`` holds the holdout corruptions."""

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

MNIST_C_CORRUPTIONS: tuple[str, ...] = (
    "shot_noise",
    "impulse_noise",
    "glass_blur",
    "motion_blur",
    "shear",
    "scale",
    "rotate",
    "brightness",
    "translate",
    "stripe",
    "fog",
    "spatter",
    "dotted_line",
    "zigzag",
    "canny_edges",
)
"""The 15 MNIST-C corruptions (Mu & Gilmer 2019), in ``google-research/mnist-c`` order; preset ``mnistc``."""

MNIST_C_LEFTOVERS: tuple[str, ...] = (
    "gaussian_noise",
    "speckle_noise",
    "pessimal_noise",
    "gaussian_blur",
    "defocus_blur",
    "zoom_blur",
    "frost",
    "snow",
    "contrast",
    "saturate",
    "jpeg_compression",
    "pixelate",
    "elastic_transform",
    "quantize",
    "line",
    "inverse",
)
"""The 16 extra corruptions of ``mnist_c_leftovers.zip``, in its order (same layout as MNIST-C; not in its mean)."""

MNISTC_PRESET = "mnistc"
_MNISTC_KEY_OFFSET = 1000


# Severity parameters with more than one field, named after their role in the reference scripts.
GlassBlur = namedtuple("GlassBlur", "sigma max_delta iterations")
DefocusBlur = namedtuple("DefocusBlur", "radius alias_blur")
MotionBlur = namedtuple("MotionBlur", "radius sigma")
ZoomRange = namedtuple("ZoomRange", "start stop step")  # np.arange's arguments, see zoom_factors
Snow = namedtuple("Snow", "loc scale zoom threshold blur_radius blur_sigma blend")
Frost = namedtuple("Frost", "image_weight frost_weight")
Fog = namedtuple("Fog", "strength wibble_decay")
Elastic = namedtuple("Elastic", "alpha sigma affine_jitter")  # in pixels
Spatter = namedtuple("Spatter", "loc scale sigma threshold intensity mode")  # mode 0 = water, 1 = mud
Saturate = namedtuple("Saturate", "multiply add")


def _rows(kind: Any, *rows: tuple[float, ...]) -> tuple[Any, ...]:
    return tuple(kind(*row) for row in rows)


_IMAGENET: dict[str, tuple[Any, ...]] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "shot_noise": (60, 25, 12, 5, 3),
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    "defocus_blur": _rows(DefocusBlur, (3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
    "glass_blur": _rows(GlassBlur, (0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
    "motion_blur": _rows(MotionBlur, (10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
    "zoom_blur": _rows(ZoomRange, (1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.02), (1, 1.26, 0.02), (1, 1.31, 0.03)),
    "snow": _rows(
        Snow,
        (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
        (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
    ),
    "frost": _rows(Frost, (1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
    "fog": _rows(Fog, (1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    # The reference writes these as multiples of 244 (a typo for 224 that the authors kept); stored as literals.
    "elastic_transform": _rows(
        Elastic, (488, 170.8, 24.4), (488, 19.52, 48.8), (12.2, 2.44, 4.88), (17.08, 2.44, 4.88), (29.28, 2.44, 4.88)
    ),
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
    "jpeg_compression": (25, 18, 15, 10, 7),
    "speckle_noise": (0.15, 0.2, 0.35, 0.45, 0.6),
    "gaussian_blur": (1, 2, 3, 4, 6),
    "spatter": _rows(
        Spatter,
        (0.65, 0.3, 4, 0.69, 0.6, 0),
        (0.65, 0.3, 3, 0.68, 0.6, 0),
        (0.65, 0.3, 2, 0.68, 0.5, 0),
        (0.65, 0.3, 1, 0.65, 1.5, 1),
        (0.67, 0.4, 1, 0.65, 1.5, 1),
    ),
    "saturate": _rows(Saturate, (0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),
}

# CIFAR-10-C and Tiny-ImageNet-C share the zoom factor ranges.
_SMALL_ZOOM = _rows(ZoomRange, (1, 1.06, 0.01), (1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.01), (1, 1.26, 0.01))

_CIFAR: dict[str, tuple[Any, ...]] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "defocus_blur": _rows(DefocusBlur, (0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
    "glass_blur": _rows(GlassBlur, (0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    "motion_blur": _rows(MotionBlur, (6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    "zoom_blur": _SMALL_ZOOM,
    "snow": _rows(
        Snow,
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ),
    "frost": _rows(Frost, (1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
    "fog": _rows(Fog, (0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "elastic_transform": _rows(
        Elastic, (0, 0, 2.56), (1.6, 6.4, 2.24), (2.56, 1.92, 1.92), (3.2, 1.28, 1.6), (3.2, 0.96, 0.96)
    ),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    "jpeg_compression": (80, 65, 58, 50, 40),
    "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1),
    "spatter": _rows(
        Spatter,
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ),
    "saturate": _rows(Saturate, (0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
}

_TINYIMAGENET: dict[str, tuple[Any, ...]] = {
    "gaussian_noise": (0.04, 0.08, 0.12, 0.15, 0.18),
    "shot_noise": (250, 100, 50, 30, 15),
    "impulse_noise": (0.01, 0.02, 0.05, 0.08, 0.14),
    "defocus_blur": _rows(DefocusBlur, (0.5, 0.6), (1, 0.1), (1.5, 0.1), (2.5, 0.01), (3, 0.1)),
    "glass_blur": _rows(GlassBlur, (0.1, 1, 1), (0.5, 1, 1), (0.6, 1, 2), (0.7, 2, 1), (0.9, 2, 2)),
    "motion_blur": _rows(MotionBlur, (10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)),
    "zoom_blur": _SMALL_ZOOM,
    "snow": _rows(
        Snow,
        (0.1, 0.2, 1, 0.6, 8, 3, 0.8),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.8),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.7),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.65),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.6),
    ),
    "frost": _rows(Frost, (1, 0.3), (0.9, 0.4), (0.8, 0.45), (0.75, 0.5), (0.7, 0.55)),
    "fog": _rows(Fog, (0.4, 3), (0.7, 3), (1, 2.5), (1.5, 2), (2, 1.75)),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "elastic_transform": _rows(
        Elastic, (0, 0, 5.12), (3.2, 19.2, 3.84), (6.4, 5.12, 3.84), (6.4, 1.92, 1.92), (10.24, 1.92, 1.28)
    ),
    "pixelate": (0.9, 0.8, 0.7, 0.6, 0.5),
    "jpeg_compression": (65, 58, 50, 40, 25),
    "speckle_noise": (0.15, 0.2, 0.25, 0.3, 0.35),
    "gaussian_blur": (0.5, 0.75, 1, 1.25, 1.5),
    "spatter": _rows(
        Spatter,
        (0.62, 0.1, 0.7, 0.7, 0.6, 0),
        (0.65, 0.1, 0.8, 0.7, 0.6, 0),
        (0.65, 0.3, 1, 0.69, 0.6, 0),
        (0.65, 0.1, 0.7, 0.68, 0.6, 1),
        (0.65, 0.1, 0.5, 0.67, 0.6, 1),
    ),
    "saturate": _rows(Saturate, (0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (30, 0.2)),
}

PRESETS: Mapping[str, Mapping[str, tuple[Any, ...]]] = MappingProxyType(
    {
        "imagenet": MappingProxyType(_IMAGENET),
        "cifar": MappingProxyType(_CIFAR),
        "tinyimagenet": MappingProxyType(_TINYIMAGENET),
    }
)
"""``PRESETS[preset][corruption]`` is the tuple of the 5 severity parameters (severity 1 first)."""


def corruption_id(name: str) -> int:
    """Position of ``name`` in :data:`ALL_CORRUPTIONS` (0..18; the ``imagecorruptions`` corruption number)."""
    if name not in ALL_CORRUPTIONS:
        raise RobustnoiseError(f"unknown corruption {name!r}; valid: {', '.join(ALL_CORRUPTIONS)}")
    return ALL_CORRUPTIONS.index(name)


def corruption_seed_key(name: str) -> int:
    """The salt that selects a corruption's seed family: :func:`corruption_id` for the 19 ImageNet-C corruptions (as
    :class:`robustnoise.eval.suite.CorruptionSuite` uses), ``1000 + position`` for the MNIST-C-only corruptions."""
    if name not in ALL_CORRUPTIONS and name in MNIST_C_CORRUPTIONS:
        return _MNISTC_KEY_OFFSET + MNIST_C_CORRUPTIONS.index(name)
    return corruption_id(name)  # raises the unknown-corruption error


def check_corruption(name: str, preset: str) -> str:
    """Validate a corruption name for ``preset`` (MNIST-C names only with ``preset='mnistc'``)."""
    if preset != MNISTC_PRESET:
        corruption_id(name)
    elif name not in MNIST_C_CORRUPTIONS:
        raise RobustnoiseError(f"unknown MNIST-C corruption {name!r}; valid: {', '.join(MNIST_C_CORRUPTIONS)}")
    return name


def as_int(value: Any, message: str) -> int:
    """``value`` as an ``int`` (numpy integers too, bools not), else :class:`RobustnoiseError` ``message``."""
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)
    except TypeError:
        raise RobustnoiseError(message) from None


def check_severity(severity: int) -> int:
    """Return ``severity`` as an ``int`` if it is an integer in 1..5, else raise :class:`RobustnoiseError`."""
    value = as_int(severity, f"severity must be an integer in 1..5, got {severity!r}")
    if value not in SEVERITIES:
        raise RobustnoiseError(f"severity must be an integer in 1..5, got {value}")
    return value


def severity_params(name: str, severity: int, preset: str = "imagenet") -> Any:
    """Parameter of corruption ``name`` at ``severity`` (1..5) for benchmark ``preset``: a number or a named tuple;
    :class:`RobustnoiseError` for an unknown corruption or preset or a severity outside 1..5."""
    corruption_id(name)
    value = check_severity(severity)
    if preset not in PRESETS:
        raise RobustnoiseError(f"unknown corruption preset {preset!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[preset][name][value - 1]


def zoom_factors(zoom: ZoomRange) -> tuple[float, ...]:
    """The zoom factors of ``np.arange(start, stop, step)``: ``ceil((stop - start) / step)`` values ``start + i delta``
    with ``delta = (start + step) - start``, float quirks included (12 factors 1.00..1.11 for ImageNet-C severity 1)."""
    start, stop, step = zoom
    count = math.ceil((stop - start) / step)
    delta = (start + step) - start
    return tuple(start + i * delta for i in range(count))
