"""Options dataclasses of the file-writing tasks (make_c, stylize) from their config nodes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from robustnoise.utils.errors import ConfigError

T = TypeVar("T")


def options_from_config(cls: type[T], cfg: Mapping[str, Any] | DictConfig | None, group: str) -> T:
    """``cls(**cfg)`` from plain values; unknown keys and a missing ``out_dir`` are one-line config errors."""
    values = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg or {})
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"unknown {group} options: {', '.join(unknown)}; valid: {', '.join(names)}")
    if not values.get("out_dir"):
        raise ConfigError(f"{group}.out_dir must be set")
    return cls(**values)
