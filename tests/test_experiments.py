"""The papers' experiment configs (conf/experiment/): the Rusak et al. rows hold the paper's recipe, and a fast_dev_run
of every experiment trains on small fixture data (the experiment's model and method, the digits instead of its
dataset). That every experiment composes with every debug option is in test_configs.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, open_dict

import robustnoise.train as train_module
from tests.conftest import compose_config

CONF = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml") if not p.name.startswith("_"))
SIZE = {"inception_v3": 96}  # the smallest input each model accepts is what makes it fast on the CPU; others: 32 px


def test_experiments_are_found():
    assert {"rusak2020_imagenet_ant1x1", "rusak2020_mnist_gnt", "rusak2020_imagenet_densenet121_ant1x1"} <= set(
        EXPERIMENTS
    )


def _rusak_imagenet(name: str) -> bool:
    return name.startswith("rusak2020_imagenet_")


@pytest.mark.parametrize("experiment", [e for e in EXPERIMENTS if e.startswith("rusak2020_")])
def test_rusak2020_rows_follow_the_appendix_b_recipe(experiment, tmp_path):
    cfg = compose_config([f"experiment={experiment}"], tmp_path)
    opt, sched, method = cfg.method.optimizer, cfg.method.scheduler, cfg.method
    assert (opt.name, opt.lr, opt.momentum) == ("sgd", 0.001, 0.9)  # SGD-M, lr 1e-3, momentum 0.9
    assert sched.gamma == 0.1 and len(sched.milestones or sched.milestones_frac) == 1  # one decay by 10
    if _rusak_imagenet(experiment):  # fine-tuned from torchvision's ImageNet weights, batch 70
        assert cfg.model.weights == "torchvision:IMAGENET1K_V1"
        batch = cfg.data.clean.batch_size if "clean" in cfg.data else cfg.data.batch_size
        assert batch == 70 and cfg.data.get("stylized_batch_size") in (None, 21)
        if method.name.startswith("ant"):  # eps 135 (1x1) / 70 (3x3), 80 epochs, a new generator every 0.33 epochs
            assert method.epsilon == (70.0 if method.kernel == 3 else 135.0)
            assert cfg.trainer.max_epochs == 80 and method.restart_every == 0.33 and method.noise_lr == 1e-4
            assert method.replay == ("no_replay" not in experiment)
        if method.name == "speckle":
            assert cfg.trainer.max_epochs == 10
    else:  # MNIST: Madry et al.'s CNN, batch 300, eps 10, sigma 0.5
        assert cfg.model.name == "madry_cnn" and cfg.data.batch_size == 300 and cfg.eval.benchmark == "mnistc"
        if method.name.startswith("ant"):
            assert method.epsilon == 10.0
        if method.name == "gnt":
            assert method.sigma == 0.5
    if method.name == "gnt":  # half of each batch noisy; sigma as in the row's name (MNIST: 0.5)
        expected = float(experiment.rsplit("sigma", 1)[1]) if "sigma" in experiment else 0.5
        assert method.p_clean == 0.5 and method.sigma == expected


def _image_folder(root: Path, classes: int, size: int, per_class: int = 2) -> Path:
    """``<root>/<class index>/*.png``: a tiny ImageFolder with the digits' classes (grayscale)."""
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for c in range(classes):
        (root / str(c)).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = (torch.rand(size, size, generator=gen) * 255).to(torch.uint8).numpy()
            Image.fromarray(pixels, mode="L").save(root / str(c) / f"{i}.png")
    return root


def _null_weights(node: DictConfig) -> None:
    """Every ``weights`` entry (corruption networks, ...) to random init: nothing to download or find on disk."""
    for key, value in node.items():
        if key == "weights":
            node[key] = None
        elif isinstance(value, DictConfig):
            _null_weights(value)


def fixture_config(experiment: str, tmp_path: Path) -> DictConfig:
    """The experiment with its dataset replaced by the digits (and tiny image folders for its extra sources), a
    small batch, fast_dev_run on the CPU and no corruption evaluation."""
    probe = compose_config([f"experiment={experiment}"], tmp_path)
    size = SIZE.get(probe.model.name, 32) if probe.model.name != "madry_cnn" else 28
    wrapped = "clean" in probe.data  # stylized / extra-source data: a clean DataModule plus image folders
    data = (
        ["data@data.clean=digits", f"data.clean.image_size={size}", "data.clean.batch_size=10"]
        if wrapped
        else ["data=digits", f"data.image_size={size}", "data.batch_size=10"]
    )
    clean = "data.clean" if wrapped else "data"
    overrides = [
        f"experiment={experiment}",
        *data,
        f"{clean}.eval_batch_size=16",
        "model.weights=null",
        "eval=none",
        "eval.max_images=16",
        "callbacks=none",
        "trainer.fast_dev_run=true",
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        "trainer.precision=32-true",
        "trainer.benchmark=false",
        "trainer.enable_progress_bar=false",
    ]
    cfg = compose_config(overrides, tmp_path)
    with open_dict(cfg):
        _null_weights(cfg.method)
        if "stylized_root" in cfg.data and cfg.data.get("source", "folder") == "folder":
            cfg.data.stylized_root = str(_image_folder(tmp_path / "stylized" / "train", 10, size).parent)
            cfg.data.stylized_batch_size = 4
        if "roots" in cfg.data:
            cfg.data.roots = [str(_image_folder(tmp_path / "extra", 10, size))]
        if "restart_steps" in cfg.method:  # ANT: a 1001-step generator restart through a ResNet-50 is minutes
            cfg.method.restart_steps = 2
        if "nu" in cfg.method and "steps" in cfg.method:  # AdA: one attack step instead of ten
            cfg.method.steps = 1
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_fast_dev_run_of_every_experiment_trains(experiment, tmp_path, monkeypatch):
    cfg = fixture_config(experiment, tmp_path)
    built = {}
    build_method = train_module.build_method

    def spy(*args, **kwargs):
        module = build_method(*args, **kwargs)
        built["module"] = module
        built["before"] = {k: v.detach().clone() for k, v in module.classifier.named_parameters()}
        return module

    monkeypatch.setattr(train_module, "build_method", spy)
    train_module.run(cfg)

    module = built["module"]
    assert module.trainer.global_step >= 1
    after = dict(module.classifier.named_parameters())
    changed = [k for k, v in built["before"].items() if not torch.equal(v, after[k].detach())]
    assert changed, f"{experiment}: no classifier weight changed in one training step"
    assert (Path(cfg.paths.output_dir) / "robustness.json").is_file()
