"""l_inf / l_2 robust accuracy with foolbox (Rusak et al. 2020, App. F) and AutoAttack (Calian et al. 2022, Table 2);
both libraries are optional (``pip install robustnoise[attacks]``)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from robustnoise.utils.errors import ConfigError, RobustnoiseError

ATTACKS = ("linf_pgd", "l2_ddn", "autoattack")
AUTOATTACK_NORMS = ("Linf", "L2", "L1")
AUTOATTACK_PARTS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")


def _optional(what: str, module: str, pin: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise RobustnoiseError(f"{what} needs {module}: pip install '{pin}' (or robustnoise[attacks])") from err


def check_attacks(attacks: Mapping[str, Any]) -> None:
    """One-line errors for ``eval.attacks`` (unknown attacks, AutoAttack's settings) before any training."""
    unknown = sorted(set(attacks) - {"enabled", "max_images", *ATTACKS})
    if unknown:
        raise ConfigError(f"unknown attack(s) eval.attacks.{', '.join(unknown)}: use {', '.join(ATTACKS)}")
    if attacks.get("autoattack"):
        _autoattack_settings(attacks["autoattack"])


def _autoattack_settings(cfg: Mapping[str, Any]) -> tuple[str, str, list[str] | None]:
    """``(norm, version, parts)`` of ``eval.attacks.autoattack``, checked."""
    norm, version = str(cfg.get("norm", "Linf")), str(cfg.get("version", "standard"))
    if norm not in AUTOATTACK_NORMS:
        raise ConfigError(f"eval.attacks.autoattack.norm must be one of {', '.join(AUTOATTACK_NORMS)}, got {norm!r}")
    parts = list(cfg.get("parts") or []) if version == "custom" else None
    if version == "custom" and (not parts or set(parts) - set(AUTOATTACK_PARTS)):
        raise ConfigError(f"eval.attacks.autoattack.parts (version=custom) must list some of {AUTOATTACK_PARTS}")
    if version not in ("standard", "plus", "rand", "custom"):
        raise ConfigError(f"eval.attacks.autoattack.version must be standard, plus, rand or custom, got {version!r}")
    return norm, version, parts


def _autoattack(classifier: nn.Module, cfg: Mapping[str, Any], device: torch.device) -> Any:
    """``norm`` (Linf | L2 | L1), ``epsilon``, ``version`` (``standard``: APGD-CE, APGD-T, FAB-T, Square with the
    authors' budgets; ``custom``: only ``parts``, with ``n_iter`` / ``n_restarts`` of APGD if given) and ``seed``."""
    norm, version, parts = _autoattack_settings(cfg)
    attack = _optional("autoattack", "pyautoattack", "pyautoattack==0.2.0").AutoAttack(
        classifier, attacks=parts, device=device, eps=float(cfg["epsilon"]), norm=norm, seed=int(cfg.get("seed", 0)),
        version=version,
    )  # fmt: skip
    for key in ("n_iter", "n_restarts"):  # a smaller APGD budget for quick checks (custom only)
        if version == "custom" and cfg.get(key) is not None:
            setattr(attack.apgd, key, int(cfg[key]))
    return attack


def robust_accuracy(
    classifier: nn.Module, loader: Iterable, name: str, cfg: Mapping[str, Any], max_images: int | None = None
) -> dict[str, float]:
    """Top-1 (%) under the attack at ``cfg['epsilon']`` on ``max_images`` images (AutoAttack: all parts)."""
    if name not in ATTACKS:
        raise RobustnoiseError(f"unknown attack {name!r}: use one of {', '.join(ATTACKS)}")
    device = next(classifier.parameters()).device
    epsilon, batches = float(cfg["epsilon"]), _batches(loader, device, max_images)
    if name == "autoattack":
        attack = _autoattack(classifier.eval(), cfg, device)
        x, y = (torch.cat(parts) for parts in zip(*batches))
        _, predicted = attack.run_standard_evaluation(x, y, batch_size=int(cfg.get("batch_size", 250)))
        correct, total = int((predicted.to(y.device) == y).sum()), len(y)
    else:
        fb = _optional("attacks", "foolbox", "foolbox==3.3.4")
        model = fb.PyTorchModel(classifier.eval(), bounds=(0.0, 1.0), device=device)
        if name == "linf_pgd":
            attack = fb.attacks.LinfPGD(abs_stepsize=float(cfg["stepsize"]), steps=int(cfg["steps"]), random_start=True)
        else:
            attack = fb.attacks.DDNAttack(steps=int(cfg["steps"]), gamma=float(cfg["gamma"]))
        correct = total = 0
        for x, y in batches:
            with torch.enable_grad():
                success = attack(model, x, y, epsilons=[epsilon])[2][0]
            correct += int((~success).sum())
            total += len(y)
    return {"epsilon": epsilon, "accuracy": 100.0 * correct / max(total, 1), "n": total}


def _batches(loader: Iterable, device: torch.device, max_images: int | None) -> Iterator[tuple[Tensor, Tensor]]:
    total = 0
    limit = sys.maxsize if max_images is None else max_images
    for batch in loader:
        x, y = batch[0][: limit - total].to(device), batch[1][: limit - total].to(device)
        total += len(y)
        yield x, y
        if total >= limit:
            return
