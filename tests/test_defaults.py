"""The method YAML (conf/method) is the single source of defaults: a missing key fails loudly, naming the key."""

from __future__ import annotations

import re

import pytest
import torch
from omegaconf import OmegaConf

from robustnoise.methods.configs import CONF_DIR, method_config, method_from_yaml
from robustnoise.utils.instantiate import instantiate

DATA = {"num_classes": 10, "in_chans": 1, "image_size": 28, "mean": [0.0], "std": [1.0]}
MODEL = {"name": "madry_cnn", "weights": None}
METHODS = sorted(p.stem for p in (CONF_DIR / "method").glob("*.yaml"))
NESTED = ("adaptive_epsilon", "augmix", "deepaugment")  # dicts the methods read key by key


def _without(node: dict, path: tuple[str, ...]) -> dict:
    parent = node
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return node


@pytest.mark.parametrize("name", METHODS)
def test_every_key_of_a_method_yaml_is_required(name):
    full = OmegaConf.to_container(method_config(name), resolve=True)
    paths = [(k,) for k in full if k != "_target_"]
    paths += [(k, sub) for k in NESTED if k in full for sub in full[k]]
    for path in paths:
        node = _without(OmegaConf.to_container(method_config(name), resolve=True), path)
        with pytest.raises(Exception, match=rf"missing.*'{re.escape(path[-1])}'"):
            instantiate(node, model=MODEL, data=DATA)


def test_ant_adaptive_epsilon_rate_comes_from_the_yaml(tmp_path):
    """The code's old fallback (0.05) differed from the YAML's 0.01; only the YAML value is used now."""
    assert method_config("ant1x1").adaptive_epsilon.rate == 0.01
    method = method_from_yaml("ant1x1", DATA, epsilon=1.0, adaptive_epsilon={"enabled": True})
    assert method.hparams.adaptive_epsilon == {"enabled": True, "target_error": 0.3, "rate": 0.01}


def test_scheduler_keys_have_no_code_defaults():
    method = method_from_yaml("vanilla", DATA)
    optimizer = torch.optim.SGD(method.classifier.parameters(), lr=0.1)
    method.hparams.scheduler = {"name": "multistep", "milestones": [1], "warmup_epochs": 0}
    with pytest.raises(KeyError, match="gamma"):
        method.build_scheduler(optimizer)
