"""OmegaConf resolvers used by the configs (registered once, on import)."""

from __future__ import annotations

import logging
import os
import re
import secrets
from datetime import datetime
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from robustnoise.utils.errors import is_number


def run_id() -> str:
    """A run-directory name that cannot collide, even for jobs started in the same second on one node."""
    return f"{datetime.now():%Y-%m-%d_%H-%M-%S.%f}_{os.getpid()}{secrets.token_hex(2)}"


def safe_dirname(text: str, max_len: int = 120) -> str:
    """Make Hydra's override_dirname usable as one path component."""
    return (re.sub(r"[^A-Za-z0-9_.,=+-]", "_", str(text)) or "base")[:max_len]


def comparable_overrides(overrides: object) -> list[str]:
    """A command's overrides without the resume keys, in a canonical order."""
    keys = [re.split(r"[=@]", str(o).lstrip("+~"), maxsplit=1)[0] for o in overrides or []]
    return sorted(str(o) for o, key in zip(overrides or [], keys) if key not in ("resume", "ckpt_path"))


def find_resumable_run(base: str | Path, overrides: object) -> Path | None:
    """The run under ``base`` with the same overrides (minus the resume keys) and the newest readable checkpoint."""
    from robustnoise.utils.resume import checkpoint_files, resumable_checkpoint  # torch: only when resuming

    wanted = comparable_overrides(overrides)
    found: list[tuple[float, Path]] = []
    for run in Path(base).glob("*/"):
        ckpts, saved = checkpoint_files(run), run / ".hydra" / "overrides.yaml"
        if ckpts and saved.is_file() and comparable_overrides(yaml.safe_load(saved.read_text())) == wanted:
            found.append((max(p.stat().st_mtime for p in ckpts), run))
    for _, run in sorted(found, reverse=True):
        path, skipped = resumable_checkpoint(run)
        if path is not None:
            return run
        logging.getLogger("robustnoise").warning("resume: %s; trying an older run", skipped)
    return None


def run_dir(base: str, resume: object = False, ckpt_path: object = None, overrides: object = None) -> str:
    """``base/<run_id>``; with ``resume=true`` (or ``ckpt_path=last``) the newest earlier run of the same command."""
    if (str(resume).lower() == "true" or ckpt_path == "last") and (found := find_resumable_run(base, overrides)):
        return str(found)
    return f"{base}/{run_id()}"


def ddp_strategy(devices: object, num_nodes: object, method_strategy: str) -> str:
    """Lightning's default strategy on one device; the method's DDP flavour on several."""
    try:
        world = int(devices) * int(num_nodes)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return method_strategy  # "auto", -1 or a device list: let the method's DDP strategy decide
    return "auto" if 0 < world <= 1 else method_strategy


def run_label(run_name: str, method: object, seed: object) -> str:
    """A W&B run name that says the method, its noise level and the seed, e.g. ``gnt_s0.5_seed1``."""
    parts = [str(run_name)]
    for key, short in (("sigma", "s"), ("epsilon", "eps")):
        value = method.get(key) if hasattr(method, "get") else None  # type: ignore[union-attr]
        if is_number(value):
            parts.append(f"{short}{value:g}")
    if seed is not None:
        parts.append(f"seed{seed}")
    return "_".join(parts)


def choice(group: str, default: str) -> str:
    """The option chosen for config ``group`` in this Hydra run (``experiment=...``), else ``default``."""
    from hydra.core.hydra_config import HydraConfig

    return str(HydraConfig.get().runtime.choices.get(group) or default) if HydraConfig.initialized() else str(default)


def register_resolvers() -> None:
    """Register the ``rn.*`` resolvers; ``rn.run_dir`` (re-read by DDP ranks) and ``rn.sweep_id`` are cached."""
    resolvers = {"rn.run_id": run_id, "rn.safe_dirname": safe_dirname, "rn.strategy": ddp_strategy}
    resolvers |= {"rn.run_label": run_label, "rn.choice": choice, "rn.run_dir": run_dir, "rn.sweep_id": run_id}
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn, use_cache=name in ("rn.run_dir", "rn.sweep_id"))


register_resolvers()
