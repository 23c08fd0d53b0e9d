"""ANT's replay pool (Rusak et al. 2020, §3.2, experience replay): snapshots of earlier noise generators."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ReplayPool(list):
    """Snapshots ``{"params", "epsilon", "restart", "kind"}``, oldest first, at most ``size`` (None: all, as the
    reference); a resume stream of ``robustnoise.training.exact_resume`` (a plain list: ``weights_only`` safe)."""

    def __init__(self, size: int | None) -> None:
        super().__init__()
        self.size = size

    def add(self, generator: nn.Module, epsilon: float, restart: int, kind: str) -> None:
        # kept on the training device: the replay step reads two snapshots every iteration
        params = {k: v.detach().clone() for k, v in generator.named_parameters()}
        self.append({"params": params, "epsilon": epsilon, "restart": restart, "kind": kind})
        if self.size is not None and len(self) > self.size:
            self.pop(0)

    def draw(self, k: int, device: torch.device) -> list[dict[str, Any]]:
        """``k`` distinct snapshots at random, their parameters on ``device`` (a resumed pool is loaded on the CPU:
        moved once, not every step)."""
        picks = torch.randperm(len(self))[:k].tolist()
        for pick in picks:
            self[pick]["params"] = {name: v.to(device) for name, v in self[pick]["params"].items()}
        return [self[pick] for pick in picks]

    def state_dict(self) -> list[dict[str, Any]]:
        return list(self)

    def load_state_dict(self, state: list[dict[str, Any]]) -> None:
        self[:] = state
