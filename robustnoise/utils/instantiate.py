"""The one place that turns config nodes into objects (so Hydra 1.4's target whitelist can be added here)."""

from __future__ import annotations

from typing import Any

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from robustnoise.utils.errors import RobustnoiseError

ALLOWED_TARGET_PREFIXES = ("robustnoise.", "pytorch_lightning.", "torch.optim.")


def instantiate(node: DictConfig | dict, **kwargs: Any) -> Any:
    """Instantiate a ``_target_`` node with plain Python containers; our own errors surface unwrapped."""
    target = str(node.get("_target_", ""))
    if not target.startswith(ALLOWED_TARGET_PREFIXES):
        raise ValueError(
            f"refusing to instantiate {target!r}: targets must start with one of {ALLOWED_TARGET_PREFIXES}"
        )
    try:
        return hydra.utils.instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, RobustnoiseError):
            raise err.__cause__ from None
        raise


def instantiate_dict(nodes: DictConfig | dict | None) -> list[Any]:
    """Instantiate every child of a keyed dict of ``_target_`` nodes (callbacks, loggers)."""
    return [instantiate(child) for child in (nodes or {}).values() if child is not None and "_target_" in child]
