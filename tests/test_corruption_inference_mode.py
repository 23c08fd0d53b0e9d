"""``corrupt()`` under ``torch.inference_mode()`` (as in Lightning's test loop) and outside it, in both orders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from robustnoise.corruptions import corrupt

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = """
import sys, torch
from robustnoise.corruptions import ALL_CORRUPTIONS, corrupt
from robustnoise.corruptions.presets import MNIST_C_CORRUPTIONS
x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
inside_first = sys.argv[1] == "inside"
cases = [(name, 3, "cifar", x) for name in ALL_CORRUPTIONS]
cases += [(name, 1, "mnistc", x[:, :1]) for name in MNIST_C_CORRUPTIONS]
for name, severity, preset, images in cases:
    outs = []
    for inside in (inside_first, not inside_first):
        with torch.inference_mode(inside):
            outs.append(corrupt(images, name, severity, preset, seed=5))
    assert outs[0].is_inference() == inside_first and outs[1].is_inference() != inside_first, name
    assert torch.allclose(outs[0], outs[1], atol=1e-6), name
    outs[1].add_(0)  # the result of the call outside inference mode is an ordinary tensor
print("ok")
"""


def _run(order: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", _SCRIPT, order], capture_output=True, text=True, env=env, timeout=300)


def test_corrupt_inside_then_outside_inference_mode_in_a_fresh_process():
    """Caches first created in inference mode must not turn into inference tensors reused outside it."""
    result = _run("inside")
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_corrupt_outside_then_inside_inference_mode():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    for name in ("gaussian_noise", "shot_noise", "glass_blur", "elastic_transform"):
        outside = corrupt(x, name, 2, "cifar", seed=3)
        with torch.inference_mode():
            inside = corrupt(x, name, 2, "cifar", seed=3)
        torch.testing.assert_close(inside, outside, rtol=0, atol=1e-6)
