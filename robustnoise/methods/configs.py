"""A method's LightningModule built outside ``run.py`` (tests, benchmarks) from ``conf/method/<name>.yaml``.

The YAML is the single source of every default: the constructors have none, so a missing key fails loudly.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from robustnoise.methods.base import RobustClassifierModule

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


@cache
def method_config(name: str) -> DictConfig:
    """``conf/method/<name>.yaml`` composed by Hydra (its defaults list included), read-only."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        node = compose(overrides=[f"+method={name}"]).method
    GlobalHydra.instance().clear()
    OmegaConf.set_readonly(node, True)
    return node


def method_from_yaml(
    name: str, data: dict[str, Any], model: dict[str, Any] | None = None, **overrides: Any
) -> RobustClassifierModule:
    """The method ``name`` as ``run.py`` builds it; ``overrides`` are deep-merged (unknown keys fail)."""
    from robustnoise.utils.instantiate import instantiate

    node = OmegaConf.merge(method_config(name), overrides)
    return instantiate(node, model=model or {"name": "madry_cnn", "weights": None}, data=data)
