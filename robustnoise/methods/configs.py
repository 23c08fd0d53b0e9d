"""A method's LightningModule built outside ``run.py`` (tests, benchmarks) from ``conf/method/<name>.yaml``, the
single source of every default (the constructors have none: a missing key fails loudly)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from robustnoise.methods.base import RobustClassifierModule

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def compose_config(overrides: Sequence[str] = (), config_name: str | None = "train") -> DictConfig:
    """``conf/<config_name>.yaml`` (or no primary config) composed by Hydra with command-line style ``overrides``:
    what ``run.py`` would see, outside a Hydra app."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides))
    GlobalHydra.instance().clear()
    return cfg


@cache
def method_config(name: str) -> DictConfig:
    """``conf/method/<name>.yaml`` composed by Hydra (its defaults list included), read-only."""
    node = compose_config([f"+method={name}"], config_name=None).method
    OmegaConf.set_readonly(node, True)
    return node


def method_from_yaml(
    name: str, data: dict[str, Any], model: dict[str, Any] | None = None, **overrides: Any
) -> RobustClassifierModule:
    """The method ``name`` as ``run.py`` builds it; ``overrides`` are deep-merged (unknown keys fail)."""
    from robustnoise.utils.instantiate import instantiate

    node = OmegaConf.merge(method_config(name), overrides)
    return instantiate(node, model=model or {"name": "madry_cnn", "weights": None}, data=data)
