"""OmegaConf resolvers used by the configs (registered once, on import)."""

from __future__ import annotations

import os
import re
import secrets
from datetime import datetime
from pathlib import Path

import yaml
from omegaconf import OmegaConf


def run_id() -> str:
    """A run-directory name that cannot collide, even for jobs started in the same second on one node."""
    return f"{datetime.now():%Y-%m-%d_%H-%M-%S.%f}_{os.getpid()}{secrets.token_hex(2)}"


def safe_dirname(text: str, max_len: int = 120) -> str:
    """Make Hydra's override_dirname usable as one path component."""
    cleaned = re.sub(r"[^A-Za-z0-9_.,=+-]", "_", str(text)) or "base"
    return cleaned[:max_len]


RESUME_KEYS = ("resume", "ckpt_path")  # the overrides a resumed run may add to the original command


def comparable_overrides(overrides: object) -> list[str]:
    """A command's overrides without the resume keys, in a canonical order."""
    keys = [re.split(r"[=@]", str(o).lstrip("+~"), maxsplit=1)[0] for o in overrides or []]
    return sorted(str(o) for o, key in zip(overrides or [], keys) if key not in RESUME_KEYS)


def find_resumable_run(base: str | Path, overrides: object) -> Path | None:
    """The run directory under ``base`` started with the same overrides (minus the resume keys) whose
    ``checkpoints/last.ckpt`` is the newest; None if there is none."""
    wanted = comparable_overrides(overrides)
    found: list[tuple[float, Path]] = []
    for run in Path(base).glob("*/"):
        ckpt, saved = run / "checkpoints" / "last.ckpt", run / ".hydra" / "overrides.yaml"
        if ckpt.is_file() and saved.is_file() and comparable_overrides(yaml.safe_load(saved.read_text())) == wanted:
            found.append((ckpt.stat().st_mtime, run))
    return max(found)[1] if found else None


def run_dir(base: str, resume: object = False, ckpt_path: object = None, overrides: object = None) -> str:
    """``base/<run_id>``; with ``resume=true`` (or ``ckpt_path=last``) the newest earlier run of the same command."""
    if resume is True or str(resume).lower() == "true" or ckpt_path == "last":
        found = find_resumable_run(base, overrides)
        if found is not None:
            return str(found)
    return f"{base}/{run_id()}"


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
    if not OmegaConf.has_resolver("rn.run_dir"):
        OmegaConf.register_new_resolver("rn.run_dir", run_dir)
    # The sweep directory: cached, so every job of a multirun (Hydra copies the master config's resolver cache into
    # each job's config, also into submitit jobs on other nodes and their requeued restarts) resolves the same one.
    if not OmegaConf.has_resolver("rn.sweep_id"):
        OmegaConf.register_new_resolver("rn.sweep_id", run_id, use_cache=True)


register_resolvers()
