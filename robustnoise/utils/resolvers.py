"""OmegaConf resolvers used by the configs (registered once, on import)."""

from __future__ import annotations

import os
import re
import secrets
from datetime import datetime

from omegaconf import OmegaConf


def run_id() -> str:
    """A run-directory name that cannot collide, even for jobs started in the same second on one node."""
    return f"{datetime.now():%Y-%m-%d_%H-%M-%S.%f}_{os.getpid()}{secrets.token_hex(2)}"


def safe_dirname(text: str, max_len: int = 120) -> str:
    """Make Hydra's override_dirname usable as one path component."""
    cleaned = re.sub(r"[^A-Za-z0-9_.,=+-]", "_", str(text)) or "base"
    return cleaned[:max_len]


def ddp_strategy(devices: object, num_nodes: object, method_strategy: str) -> str:
    """Lightning's default strategy on one device; the method's DDP flavour on several."""
    try:
        world = int(devices) * int(num_nodes)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return method_strategy  # "auto", -1 or a device list: let the method's DDP strategy decide
    return "auto" if 0 < world <= 1 else method_strategy


def register_resolvers() -> None:
    """Register the ``rn.*`` resolvers (idempotent)."""
    for name, fn in {"rn.run_id": run_id, "rn.safe_dirname": safe_dirname, "rn.strategy": ddp_strategy}.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register_resolvers()
