"""Shared fixtures: composed Hydra configs pointed at a temporary run directory; no network, no W&B account."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402

import robustnoise.utils.resolvers  # noqa: E402,F401
from robustnoise.methods.configs import compose_config as package_compose_config  # noqa: E402
from run import store_schema, task_config  # noqa: E402

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"


def compose_config(overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose ``conf/<task>.yaml`` like ``run.py`` would, with a temporary output dir and CPU-only trainer."""
    name = task_config(overrides)
    store_schema(name)
    trains = name in ("train", "eval")  # the tasks with a trainer and loggers
    cfg = package_compose_config([*(["trainer=cpu", "logger=none"] if trains else []), *overrides], config_name=name)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir / "logs")
        cfg.paths.data_dir = str(output_dir / "data")
        if trains:
            cfg.trainer.enable_model_summary = False
    return cfg


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    def factory(*overrides: str) -> DictConfig:
        return compose_config(list(overrides), tmp_path)

    return factory


@pytest.fixture(scope="session")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    from robustnoise.data import load_digit_images

    return load_digit_images(28)


FLOAT_ATOL = 1e-5
"""Float images in [0, 1] computed at other batch shapes, batch positions, devices or CPU kernel paths agree to this:
FFT, GEMM and convolution kernels change with the batch shape and the instruction set. Seen: 3e-7 for the blurs (a
few float32 ulps of 1.0) and 2e-6 for elastic_transform with MKL's AVX2 GEMM (ulps of displacements of tens of pixels,
times the image gradient); a grey level is 3.9e-3. See docs/exactness.md, "What is bit-exact and what is equal to float
rounding"."""


def assert_images_close(actual: torch.Tensor, expected: torch.Tensor, msg: object = None) -> None:
    """Equal to float rounding (``FLOAT_ATOL``, no relative part: images are in [0, 1])."""
    torch.testing.assert_close(actual, expected, atol=FLOAT_ATOL, rtol=0, msg=None if msg is None else str(msg))


def assert_quantized_close(actual, expected, levels: int = 1, fraction: float = 0.01, msg: object = None) -> None:
    """8-bit images (uint8, or float on the 1/255 grid) quantised from float results that agree to float rounding.

    Where a float value lies within float rounding of a quantisation boundary, the two results land one grey level
    apart, so a few values may differ: at most ``fraction`` of them, by at most ``levels`` levels (more than one only
    after a JPEG round trip, which spreads a flipped pixel over its 8x8 block).
    """
    a, b = torch.as_tensor(actual), torch.as_tensor(expected)
    assert a.shape == b.shape and (a.dtype == torch.uint8) == (b.dtype == torch.uint8), msg
    scale = 1.0 if a.dtype == torch.uint8 else 255.0
    diff = (a.double() - b.double()).abs() * scale
    assert diff.numel() == 0 or float(diff.max()) <= levels + 1e-3, msg
    assert float((diff > 1e-3).double().mean()) <= fraction, msg
