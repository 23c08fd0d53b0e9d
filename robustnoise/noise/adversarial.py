"""Adversarial noise (Rusak et al. 2020, §3.2, §4, Table 2): a generator maximising a frozen classifier's cross-entropy
on images perturbed to clipped l2 norm ``epsilon``, for ANT's restarts and the evaluation (Adam 5e-4, 1001 steps)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from robustnoise.noise.generators import NoiseGenerator
from robustnoise.noise.projection import project_to_sphere
from robustnoise.utils.progress import progress

Batches = Iterator[tuple[Tensor, Tensor]]


def generator_step(
    classifier: nn.Module, generator: Callable[[Tensor], Tensor], optimizer: Any, x: Tensor, y: Tensor,
    epsilon: Tensor | float, backward: Callable[[Tensor], Any] = Tensor.backward,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """One step of ``generator`` (or its DDP wrapper) against the frozen ``classifier``; returns (CE, accuracy)."""
    was_training = classifier.training
    weights = {name: p.detach() for name, p in classifier.eval().named_parameters()}
    logits = functional_call(classifier, weights, (project_to_sphere(x, generator(x), epsilon),))
    loss = F.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    backward(-loss)
    optimizer.step()
    classifier.train(was_training)
    return loss.detach(), (logits.detach().argmax(dim=1) == y).float().mean()


def train_generator(
    classifier: nn.Module, generator: Callable[[Tensor], Tensor], optimizer: Any, batches: Batches,
    epsilon: Tensor | float, steps: int, name: str, backward: Callable[[Tensor], Any] = Tensor.backward,
) -> tuple[list[Tensor], list[Tensor], Tensor | None]:  # fmt: skip
    """``steps`` :func:`generator_step` on ``batches``; the losses, accuracies and the last batch's images."""
    stats, x = [], None
    for _ in progress(range(steps), name):
        x, y = next(batches)
        stats.append(generator_step(classifier, generator, optimizer, x, y, epsilon, backward))
    return [loss for loss, _ in stats], [accuracy for _, accuracy in stats], x


def reset_optimizer(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The same optimiser object (checkpoints keep it) made fresh: no moments, learning rate ``lr``."""
    optimizer.state.clear()
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_adversarial_generator(
    classifier: nn.Module, train_loader: Iterable, epsilon: float, kernel: int = 1, steps: int = 1001,
    lr: float = 5e-4, seed: int = 0, name: str = "adversarial noise generator",
) -> NoiseGenerator:  # fmt: skip
    """A fresh generator trained against the frozen classifier, seeded by ``seed`` in a forked RNG."""
    device = next(classifier.parameters()).device
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        batches = ((x.to(device), y.to(device)) for _ in itertools.count() for x, y, *_ in train_loader)
        first = next(batches)
        generator = NoiseGenerator(channels=first[0].shape[1], kernel=kernel).to(device)
        optimizer = torch.optim.Adam(generator.parameters(), lr=lr)
        train_generator(classifier, generator, optimizer, itertools.chain([first], batches), epsilon, steps, name)
    return generator.eval()
