"""A method built outside ``run.py`` from ``conf/method/<name>.yaml``, the single source of every default (the
constructors have none); the min-max methods' argument checks, kept out of their algorithm files."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from robustnoise.methods.base import RobustClassifierModule
from robustnoise.methods.gnt import noise_levels
from robustnoise.utils.errors import ConfigError, is_number

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def compose_config(overrides: Sequence[str] = (), config_name: str | None = "train") -> DictConfig:
    """``conf/<config_name>.yaml`` (None: no primary config) composed with ``overrides``, as ``run.py`` sees it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


@cache
def method_config(name: str) -> DictConfig:
    """``conf/method/<name>.yaml`` composed by Hydra (its defaults list included), read-only."""
    node = compose_config([f"+method={name}"], config_name=None).method
    OmegaConf.set_readonly(node, True)
    return node


def method_from_yaml(name: str, data: dict, model: dict | None = None, **overrides: Any) -> RobustClassifierModule:
    """The method ``name`` as ``run.py`` builds it; ``overrides`` are deep-merged (unknown keys fail)."""
    from robustnoise.utils.instantiate import instantiate

    node = OmegaConf.merge(method_config(name), overrides)
    return instantiate(node, model=model or {"name": "madry_cnn", "weights": None}, data=data)


def check_ant(a: dict[str, Any]) -> None:
    """``AdversarialNoiseTraining``'s arguments (``conf/method/ant1x1.yaml`` documents each)."""
    if missing := {"enabled", "target_error", "rate"} - set(a["adaptive_epsilon"]):
        raise ConfigError(f"method.adaptive_epsilon: missing key(s) {sorted(missing)}")
    eps = a["epsilon"]
    if eps != "auto" and not (is_number(eps) and 0 < eps < math.inf):
        raise ConfigError(f"epsilon must be > 0 and finite, or 'auto', got {eps!r}")
    noise_levels(a["epsilon_sigma"], "epsilon_sigma")
    if a["restart_unit"] not in ("epoch", "step") or a["stylized_split"] not in ("paper", "reference"):
        raise ConfigError(f"restart_unit: epoch | step (got {a['restart_unit']!r}); stylized_split: paper | reference")
    if a["restart_every"] <= 0 or a["restart_steps"] < 0 or a["replay_per_step"] < 1:
        raise ConfigError("restart_every must be > 0, restart_steps >= 0 and replay_per_step >= 1")
    if min(a["p_current"], a["p_replay"], a["p_stylized"]) < 0 or a["p_current"] + a["p_replay"] <= 0:
        raise ConfigError("p_current and p_replay must be >= 0 with a positive sum; p_stylized >= 0")


def check_ada(a: dict[str, Any]) -> None:
    """``AdversarialAugment``'s arguments (``conf/method/ada.yaml`` documents each)."""
    if not all(is_number(v) and 0 <= v < math.inf for v in (a["nu"], a["steps"], a["step_fraction"])):
        got = f"{a['nu']!r}, {a['steps']!r}, {a['step_fraction']!r}"
        raise ConfigError(f"nu, steps and step_fraction must be finite numbers >= 0, got {got}")
    if a["feasible_set"] not in ("l2", "linf"):
        raise ConfigError(f"unknown feasible_set {a['feasible_set']!r}: use one of l2, linf")
    if a["ssim_channels"] not in ("rgb", "luma"):
        raise ConfigError(f"unknown ssim_channels {a['ssim_channels']!r}: use rgb or luma")
    if a["ssim_gammas"] < 3:
        raise ConfigError(f"ssim_gammas must be >= 3 to fit a quadratic, got {a['ssim_gammas']}")
    if a["corruption_net"].get("resize") == "keep":
        raise ConfigError("AdA needs a corruption network whose output has the input's size: resize=sr_then_down")
