"""Every config option composes and instantiates; trainer configs stay compatible with manual optimisation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import StrategyRegistry

from robustnoise.data import ClassificationDataModule
from robustnoise.train import build_method
from robustnoise.utils.errors import ConfigError, RobustnoiseError
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


@pytest.mark.parametrize(
    ("overrides", "preset", "benchmark"),
    [
        ([], "mnistc", "mnistc"),  # plain `python run.py`: the digits get MNIST-C's corruptions, not ImageNet-C's
        (["task=eval"], "mnistc", "mnistc"),
        (["data=mnist"], "mnistc", "mnistc"),
        (["data=cifar10"], "cifar", "generated"),
        (["data=tiny_imagenet"], "tinyimagenet", "generated"),
        (["eval=noise"], "imagenet", "generated"),  # a command-line eval=... wins over the data's default
        (["data=mnist", "eval=noise"], "imagenet", "generated"),
        (["experiment=digits_demo"], "mnistc", "mnistc"),
    ],
)
def test_each_dataset_defaults_to_the_evaluation_made_for_its_size(make_cfg, overrides, preset, benchmark):
    from robustnoise.eval.evaluate import generated_preset

    cfg = make_cfg(*overrides)
    ev = cfg.eval
    assert (generated_preset(ev, cfg.data.corruption_preset), ev.benchmark) == (preset, benchmark)
    assert "gaussian_noise" in ev.corruptions or preset == "mnistc"  # MNIST-C has no gaussian_noise


def test_each_task_composes_only_its_own_groups(make_cfg):
    train, evaluate, make_c = make_cfg(), make_cfg("task=eval"), make_cfg("task=make_c")
    assert {"make_c", "stylize", "pretrain_edsr"}.isdisjoint(train) and "callbacks" in train
    assert "callbacks" not in evaluate and evaluate.task == "eval" and "trainer" in evaluate
    assert set(make_c) == {"task", "run_name", "seed", "data", "paths", "make_c"}
    assert set(make_cfg("task=pretrain_edsr")) == {"task", "run_name", "seed", "data", "paths", "pretrain_edsr"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("make_c.severity=1", r"Key 'severity' not in 'MakeCOptions'"),  # a typo is refused, not ignored
        ("stylize.alpha=strong", r"Value 'strong' of type 'str' could not be converted to Float"),
        ("pretrain_edsr.steps=1.5", r"Value '1.5' of type 'float' could not be converted to Integer"),
    ],
)
def test_file_task_options_are_typed_and_closed(make_cfg, override, message):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as err:
        make_cfg(f"task={override.lstrip('+').split('.')[0]}", override)
    assert err.value.__cause__ is not None and re.search(message, str(err.value.__cause__)), err.value.__cause__


def test_an_added_option_is_refused_before_the_task_runs(make_cfg):
    from robustnoise.train import run

    with pytest.raises(ConfigError, match=r"^Key 'severity' not in 'MakeCOptions'$"):  # one line through run.py
        run(make_cfg("task=make_c", "+make_c.severity=1"))


def test_task_argument_picks_the_primary_config():
    from run import task_config

    assert task_config([]) == "train" and task_config(["method=gnt", "task=eval"]) == "eval"
    assert task_config(["--config-name", "stylize"]) == task_config(["--config-name=stylize"]) == "stylize"
    with pytest.raises(RobustnoiseError, match="unknown task 'fit': use task=train, task=eval, task=make_c"):
        task_config(["task=fit"])


def test_run_name_is_the_chosen_experiment_else_the_method():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    names = []
    for overrides in (["experiment=rusak2020_imagenet_ant3x3_sin"], ["method=gnt"]):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)  # as in a run.py job: the choices are known
        try:
            names.append(cfg.run_name)
        finally:
            HydraConfig.instance().cfg = None
            GlobalHydra.instance().clear()
    assert names == ["rusak2020_imagenet_ant3x3_sin", "gnt"]
