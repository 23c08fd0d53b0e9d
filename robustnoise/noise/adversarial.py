"""Adversarial noise against a fixed classifier (Rusak et al. 2020, §3.2 and §4, Table 2).

A fresh noise generator is trained to maximise the frozen classifier's cross-entropy on images perturbed by its
noise, projected to clipped l2 norm ``epsilon`` (the reference's "retrain" of a generator: Adam 5e-4, 1001 steps).
The evaluation suite (``robustnoise.eval.suite``) measures the accuracy under its noise and eps* along it, over several
seeds (mean and std, as the paper's Table 2): robustness to the worst noise the generator family can express.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustnoise.noise.generators import NoiseGenerator
from robustnoise.noise.projection import project_to_sphere
from robustnoise.utils.progress import progress


def _cycle(loader: Iterable) -> Iterator:
    while True:
        yield from loader


def train_adversarial_generator(
    classifier: nn.Module,
    train_loader: Iterable,
    epsilon: float,
    kernel: int = 1,
    steps: int = 1001,
    lr: float = 5e-4,
    seed: int = 0,
    name: str = "adversarial noise generator",
    **generator_kwargs: Any,
) -> NoiseGenerator:
    """Train a fresh generator against the frozen (eval-mode) classifier; the classifier's weights are untouched.

    Seeded by ``seed`` inside a forked RNG, so the caller's random streams stay as they were. ``name`` labels the
    progress bar (``robustnoise.utils.progress``).
    """
    device = next(classifier.parameters()).device
    was_training = classifier.training
    requires_grad = [p.requires_grad for p in classifier.parameters()]
    classifier.eval().requires_grad_(False)
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(seed)
            batches = _cycle(train_loader)
            x, y = (t.to(device) for t in next(batches)[:2])
            generator = NoiseGenerator(channels=x.shape[1], kernel=kernel, **generator_kwargs).to(device)
            optimizer = torch.optim.Adam(generator.parameters(), lr=lr)
            for step in progress(range(steps), name):
                if step:
                    x, y = (t.to(device) for t in next(batches)[:2])
                loss = -F.cross_entropy(classifier(project_to_sphere(x, generator(x), epsilon)), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    finally:
        classifier.train(was_training)
        for p, flag in zip(classifier.parameters(), requires_grad):
            p.requires_grad_(flag)
    return generator.eval()


__all__ = ["train_adversarial_generator"]
