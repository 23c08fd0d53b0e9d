"""Adversarial noise against a fixed classifier (Rusak et al. 2020, §3.2 and §4, Table 2).

A fresh noise generator is trained to maximise the frozen classifier's cross-entropy on images perturbed by its
noise, projected to clipped l2 norm ``epsilon`` (the reference's "retrain" of a generator: Adam 5e-4, 1001 steps).
The accuracy under its noise, over several seeds (mean and std, as the paper's Table 2), measures robustness to the
worst noise distribution the generator family can express.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustnoise.noise.generators import NoiseGenerator
from robustnoise.noise.projection import project_to_sphere


def _cycle(loader: Iterable) -> Iterator:
    while True:
        yield from loader


@torch.no_grad()
def accuracy_under_generator(
    classifier: nn.Module, generator: NoiseGenerator, loader: Iterable, epsilon: float
) -> float:
    """Top-1 accuracy (%) on ``loader`` when every image gets a fresh sample of the generator's noise."""
    device = next(classifier.parameters()).device
    correct = total = 0
    for batch in loader:
        x, y = batch[0].to(device), batch[1].to(device)
        logits = classifier(project_to_sphere(x, generator(x), epsilon))
        correct += int((logits.argmax(dim=1) == y).sum())
        total += len(y)
    return 100.0 * correct / max(total, 1)


def train_adversarial_generator(
    classifier: nn.Module,
    train_loader: Iterable,
    epsilon: float,
    kernel: int = 1,
    steps: int = 1001,
    lr: float = 5e-4,
    seed: int = 0,
    **generator_kwargs: Any,
) -> NoiseGenerator:
    """Train a fresh generator against the frozen (eval-mode) classifier; the classifier's weights are untouched."""
    device = next(classifier.parameters()).device
    first = next(iter(train_loader))[0]
    torch.manual_seed(seed)
    generator = NoiseGenerator(channels=first.shape[1], kernel=kernel, **generator_kwargs).to(device)
    optimizer = torch.optim.Adam(generator.parameters(), lr=lr)
    was_training = classifier.training
    requires_grad = [p.requires_grad for p in classifier.parameters()]
    classifier.eval().requires_grad_(False)
    try:
        batches = _cycle(train_loader)
        for _ in range(steps):
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


def adversarial_noise_accuracy(
    classifier: nn.Module,
    train_loader: Iterable,
    test_loader: Iterable,
    epsilon: float,
    seeds: int = 4,
    **kwargs: Any,
) -> dict[str, Any]:
    """Accuracy under freshly trained adversarial generators, one per seed: mean, std and the per-seed values."""
    accuracies = []
    for seed in range(seeds):
        generator = train_adversarial_generator(classifier, train_loader, epsilon, seed=seed, **kwargs)
        accuracies.append(accuracy_under_generator(classifier, generator, test_loader, epsilon))
    std = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    return {"epsilon": float(epsilon), "mean": statistics.fmean(accuracies), "std": std, "per_seed": accuracies}


def clean_accuracy(classifier: nn.Module, loader: Iterable) -> float:
    device = next(classifier.parameters()).device
    with torch.no_grad():
        hits = [(classifier(b[0].to(device)).argmax(1) == b[1].to(device)).float() for b in loader]
    return 100.0 * float(torch.cat(hits).mean()) if hits else float("nan")


__all__ = [
    "accuracy_under_generator",
    "adversarial_noise_accuracy",
    "clean_accuracy",
    "train_adversarial_generator",
]
