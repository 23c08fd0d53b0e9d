"""Every config option composes and instantiates; trainer configs stay compatible with manual optimisation."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import StrategyRegistry

from robustnoise.data import ClassificationDataModule
from robustnoise.train import build_method
from robustnoise.utils.instantiate import instantiate, instantiate_dict
from robustnoise.utils.resolvers import ddp_strategy

CONF = Path(__file__).resolve().parents[1] / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("data", options("data"))
def test_every_data_option_instantiates(make_cfg, data):
    cfg = make_cfg(f"data={data}")
    dm = instantiate(cfg.data)
    assert isinstance(dm, ClassificationDataModule)
    assert dm.num_classes in (10, 100, 200, 1000) and dm.corruption_preset in ("imagenet", "cifar", "tinyimagenet")


@pytest.mark.parametrize("method", options("method"))
def test_every_method_option_builds_its_module_with_plain_hparams(make_cfg, method):
    cfg = make_cfg(f"method={method}")
    dm = instantiate(cfg.data)
    module = build_method(cfg, dm)
    assert module.automatic_optimization is False
    assert cfg.method.ddp_strategy in StrategyRegistry.available_strategies()
    for value in module.hparams.values():
        assert isinstance(value, (int, float, str, bool, list, dict, type(None))), type(value)


@pytest.mark.parametrize("model", options("model"))
def test_every_model_option_builds(make_cfg, model):
    size = 96 if model == "inception_v3" else 32
    cfg = make_cfg(f"model={model}", f"data.image_size={size}")
    module = build_method(cfg, instantiate(cfg.data)).eval()
    with torch.no_grad():
        logits = module(torch.rand(2, 1, size, size))  # digits are grayscale: torchvision nets see it as RGB
    assert logits.shape == (2, 10)


@pytest.mark.parametrize("trainer", options("trainer"))
def test_trainer_options_never_set_automatic_clipping_or_accumulation(make_cfg, trainer):
    cfg = make_cfg(f"trainer={trainer}")
    assert not cfg.trainer.get("gradient_clip_val")
    assert cfg.trainer.get("accumulate_grad_batches", 1) == 1
    if cfg.trainer.accelerator in ("auto", "cpu") and cfg.trainer.devices == 1:
        assert isinstance(instantiate(cfg.trainer, logger=False), pl.Trainer)


@pytest.mark.parametrize(("callbacks", "logger"), [("default", "csv"), ("none", "none"), ("default", "wandb")])
def test_callbacks_and_loggers_instantiate(make_cfg, callbacks, logger):
    cfg = make_cfg(f"callbacks={callbacks}", f"logger={logger}")
    assert len(instantiate_dict(cfg.callbacks)) == (0 if callbacks == "none" else 5)  # 2 checkpoint callbacks
    assert len(instantiate_dict(cfg.logger)) == (0 if logger == "none" else 1)


@pytest.mark.parametrize("experiment", options("experiment"))
@pytest.mark.parametrize("debug", [None, *options("debug")])
def test_experiments_and_debug_configs_compose(make_cfg, experiment, debug):
    cfg = make_cfg(f"experiment={experiment}", *([f"debug={debug}"] if debug else []))
    assert cfg.method.name and cfg.trainer.max_epochs >= 1


def test_strategy_follows_the_method_only_with_several_devices(make_cfg):
    assert make_cfg("trainer.devices=1").trainer.strategy == "auto"
    assert make_cfg("trainer.devices=8").trainer.strategy == "ddp"
    assert make_cfg("trainer.devices=2", "trainer.num_nodes=2").trainer.strategy == "ddp"
    assert ddp_strategy("auto", 1, "ddp_find_unused_parameters_true") == "ddp_find_unused_parameters_true"


def test_gnt_sweep_value_reaches_the_module(make_cfg):
    cfg = make_cfg("method=gnt", "method.sigma=0.3")
    assert build_method(cfg, instantiate(cfg.data)).levels == [0.3]


@pytest.mark.parametrize("eval_option", options("eval"))
def test_every_eval_option_composes_with_known_corruptions(make_cfg, eval_option):
    from robustnoise.corruptions.transforms import corruption_seed_key

    cfg = make_cfg(f"eval={eval_option}")
    for name in cfg.eval.corruptions:
        corruption_seed_key(name)  # raises for an unknown corruption
    assert all(1 <= s <= 5 for s in cfg.eval.severities)
    from robustnoise.metrics import Benchmark

    benchmark = Benchmark(cfg.eval.benchmark)  # one vocabulary: a released set names the benchmark of its files
    assert cfg.eval.get("released") is None or benchmark.reader in (
        "cifar10c",
        "cifar100c",
        "tinyimagenetc",
        "imagenetc",
        "mnistc",
    )


def test_disabling_the_progress_bar_drops_its_callback(make_cfg):
    from pytorch_lightning.callbacks import ProgressBar

    from robustnoise.train import build_trainer

    trainer = build_trainer(make_cfg("trainer.enable_progress_bar=false"))
    assert not any(isinstance(cb, ProgressBar) for cb in trainer.callbacks)
    assert any(isinstance(cb, ProgressBar) for cb in build_trainer(make_cfg()).callbacks)
