"""Adversarial robustness with foolbox 3 (Rusak et al. 2020, App. F): l_inf PGD and l_2 DDN at fixed epsilons.

foolbox is an optional dependency (``pip install robustnoise[attacks]``); the model takes [0, 1] images and normalises
inside, so the attacks work in pixel space with bounds (0, 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from robustnoise.utils.errors import RobustnoiseError

ATTACKS = ("linf_pgd", "l2_ddn")


def _foolbox() -> Any:
    try:
        import foolbox
    except ImportError as err:  # optional extra
        raise RobustnoiseError("attacks need foolbox: pip install 'foolbox==3.3.4' (or robustnoise[attacks])") from err
    return foolbox


def build_attack(name: str, cfg: Mapping[str, Any]) -> Any:
    """A foolbox attack from plain settings: ``linf_pgd`` (steps, stepsize) or ``l2_ddn`` (steps, gamma)."""
    fb = _foolbox()
    if name == "linf_pgd":
        return fb.attacks.LinfPGD(abs_stepsize=float(cfg["stepsize"]), steps=int(cfg["steps"]), random_start=True)
    if name == "l2_ddn":
        return fb.attacks.DDNAttack(steps=int(cfg["steps"]), gamma=float(cfg["gamma"]))
    raise RobustnoiseError(f"unknown attack {name!r}: use one of {', '.join(ATTACKS)}")


def robust_accuracy(
    classifier: nn.Module, loader: Iterable, name: str, cfg: Mapping[str, Any], max_images: int | None = None
) -> dict[str, float]:
    """Accuracy (%) under the attack at ``cfg['epsilon']``, over the first ``max_images`` images of ``loader``."""
    fb = _foolbox()
    device = next(classifier.parameters()).device
    model = fb.PyTorchModel(classifier.eval(), bounds=(0.0, 1.0), device=device)
    attack = build_attack(name, cfg)
    correct = total = 0
    for batch in loader:
        x, y = batch[0].to(device), batch[1].to(device)
        if max_images is not None:
            x, y = x[: max_images - total], y[: max_images - total]
        with torch.enable_grad():
            _, _, success = attack(model, x, y, epsilons=[float(cfg["epsilon"])])
        correct += int((~success[0]).sum())
        total += len(y)
        if max_images is not None and total >= max_images:
            break
    return {"epsilon": float(cfg["epsilon"]), "accuracy": 100.0 * correct / max(total, 1), "n": total}
