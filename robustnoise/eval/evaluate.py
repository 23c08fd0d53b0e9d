"""The final evaluation (``task=train``'s last step, ``task=eval``): the ``eval.*`` suite in Lightning's test loop,
adversarial noise generators, the attacks of :mod:`robustnoise.eval.attacks` and the report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from robustnoise.data import ClassificationDataModule
from robustnoise.data.released_c import check_matches_clean, released_c_sets
from robustnoise.eval.attacks import ATTACKS, check_attacks, robust_accuracy
from robustnoise.eval.suite import CorruptionSuite, check_suite_args
from robustnoise.methods.base import RobustClassifierModule
from robustnoise.metrics import Benchmark
from robustnoise.noise.adversarial import train_adversarial_generator
from robustnoise.noise.calibration import epsilon_for_sigma
from robustnoise.report.plots import log_image_file
from robustnoise.report.reporting import Report, write_report
from robustnoise.utils.errors import ConfigError, RobustnoiseError
from robustnoise.utils.resume import saved_hparams

log = logging.getLogger("robustnoise")


def check_eval_config(cfg: DictConfig, datamodule: ClassificationDataModule, read_released: bool = True) -> None:
    """Check ``eval`` (benchmark, corruptions, severities, released set: its files if ``read_released``) before work."""
    ev = cfg.eval
    released = ev.get("released") or {}
    benchmark = Benchmark.parse(ev.benchmark)
    if released and benchmark.reader is None:
        raise ConfigError(
            f"eval.released needs the benchmark of its files: eval.benchmark="
            f"{'|'.join(b.value for b in Benchmark if b.reader)} (or eval=cifar10c, imagenetc, ...)"
        )
    if ev.corruptions and not ev.severities:
        raise ConfigError(
            f"eval.severities is empty: the corruptions {list(ev.corruptions)} would be evaluated at no severity "
            "(give severities in 1..5, e.g. eval.severities=[1,2,3,4,5])"
        )
    for key in ("corruptions", "severities"):
        if released.get(key) is not None and len(released[key]) == 0:
            raise ConfigError(
                f"eval.released.{key} is empty: no released set would be evaluated "
                f"(null takes every {'severity' if key == 'severities' else 'corruption'} under eval.released.root)"
            )
    if not ev.corruptions and not released:
        log.warning("eval.corruptions is empty and no released -C set is configured: only clean accuracy is evaluated")
    check_suite_args(ev.corruptions, ev.severities, ev.get("gaussian_sigmas"))
    check_attacks(ev.get("attacks") or {})
    if released:
        dm = datamodule
        check_matches_clean(benchmark.reader, dm.name, dm.num_classes, dm.in_chans, dm.image_size)
        if read_released:
            _released_sets(ev, datamodule)


def checkpoint_overrides(cfg: DictConfig) -> dict[str, Any]:
    """``task=eval``'s model settings: ``ckpt_path`` (with its stored architecture) or ``model.weights``."""
    ckpt = cfg.get("ckpt_path")
    if not ckpt:
        if not cfg.model.get("weights"):
            raise RobustnoiseError("task=eval needs ckpt_path=<file> or model.weights=<file|torchvision>")
        return {}
    if not Path(ckpt).is_file():
        raise RobustnoiseError(f"checkpoint not found: {ckpt}")
    overrides: dict[str, Any] = {"weights": str(ckpt)}
    saved_model = saved_hparams(ckpt).get("model")
    if saved_model and saved_model.get("name") != cfg.model.name:
        log.info("using the architecture stored in the checkpoint: %s", saved_model["name"])
        overrides["name"] = saved_model["name"]
    return overrides


def evaluate_robustness(
    cfg: DictConfig, trainer: pl.Trainer, method: RobustClassifierModule, datamodule: ClassificationDataModule
) -> dict[str, Any]:
    """Evaluate the test split, write the report; returns ``robustness.json``'s content (empty off rank 0)."""
    ev = cfg.eval
    generators, noise_epsilon = adversarial_generators(ev.get("adversarial_noise") or {}, method, datamodule)
    suite = corruption_suite(ev, datamodule, generators, noise_epsilon)
    method.test_suite = suite
    trainer.test(method, dataloaders=suite.dataloaders(), verbose=False)
    if not trainer.is_global_zero:
        return {}
    who = {"method": cfg.method.name, "run_name": cfg.run_name, "model": cfg.model.name, "seed": cfg.get("seed")}
    report = evaluation_report(ev, suite, method.classifier, datamodule, **who)
    out_dir = Path(trainer.default_root_dir)
    write_report(report, out_dir)
    for figure in ("severity_curves", "heatmap"):  # the report's plots, for W&B dashboards
        if (out_dir / f"{figure}.png").is_file():
            log_image_file(method, f"report/{figure}", out_dir / f"{figure}.png")
    print(report.summary())
    log.info("robustness report written to %s", out_dir)
    rows = [[k, v["top1"], v["top5"], v["n"]] for k, v in report.sets.items()]
    for logger in trainer.loggers:
        if hasattr(logger, "log_table"):
            logger.log_table(key="test_c/table", columns=["set", "top1", "top5", "n"], data=rows)
    return report.to_dict()


def corruption_suite(
    ev: DictConfig,
    datamodule: ClassificationDataModule,
    generators: list[torch.nn.Module] | None = None,
    noise_epsilon: float | None = None,
) -> CorruptionSuite:
    """The evaluation sets of ``eval`` (generated and released) over the test split of ``datamodule``."""
    return CorruptionSuite(
        datamodule.test_dataset(ev.get("max_images")),
        corruptions=list(ev.corruptions),
        severities=list(ev.severities),
        preset=generated_preset(ev, datamodule.corruption_preset),
        seed=ev.seed,
        batch_size=ev.batch_size,
        num_workers=datamodule.num_workers,
        released=_released_sets(ev, datamodule),
        eps_star=OmegaConf.to_container(ev.eps_star) if ev.get("eps_star") else None,
        noise_generators=generators,
        noise_epsilon=noise_epsilon,
        gaussian_sigmas=list(ev.get("gaussian_sigmas") or []),
        benchmark=Benchmark.parse(ev.benchmark),
    )


def generated_preset(ev: DictConfig, data_preset: str) -> str:
    """The severity table of the generated corruptions: ``eval.preset``, else the benchmark's, else the data's."""
    return ev.get("preset") or Benchmark.parse(ev.benchmark).preset or data_preset


def evaluation_report(
    ev: DictConfig,
    suite: CorruptionSuite,
    classifier: torch.nn.Module,
    datamodule: ClassificationDataModule,
    **who: Any,
) -> Report:
    """The report of an evaluated ``suite`` and ``who``, with the attacks of ``eval.attacks`` (run here)."""
    attacks = ev.get("attacks") or {}
    loader = datamodule.test_dataloader
    return Report(
        sets=suite.accuracies(),
        data=datamodule.name,
        benchmark=suite.benchmark,
        preset=suite.preset if list(ev.corruptions) else None,
        attacks={
            name: robust_accuracy(classifier, loader(), name, attacks[name], attacks.get("max_images"))
            for name in ATTACKS
            if attacks.get("enabled") and attacks.get(name)
        },
        **suite.adversarial_results(),
        **who,
    )


def adversarial_generators(
    cfg: DictConfig, method: RobustClassifierModule, datamodule: ClassificationDataModule
) -> tuple[list[torch.nn.Module], float | None]:
    """Fresh noise generators trained against the final classifier, one per seed (identical on every rank)."""
    if not cfg.get("enabled"):
        return [], None
    datamodule.setup("fit")
    epsilon = cfg.get("epsilon")
    own = getattr(method, "epsilon", None)
    if epsilon is None and own is not None and torch.isfinite(own):
        epsilon = float(own)  # an ANT model: its own training epsilon
    if epsilon is None:
        epsilon = epsilon_for_sigma(datamodule.train_set, 0.5)
    loader = DataLoader(
        datamodule.train_set,
        batch_size=datamodule.batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(0),
        num_workers=datamodule.num_workers,
    )
    classifier = method.classifier.to(method.device)
    settings = {"kernel": cfg.kernel, "steps": cfg.steps, "lr": cfg.lr}
    names = [f"eval: adversarial noise generator {seed + 1}/{cfg.seeds}" for seed in range(cfg.seeds)]
    generators = [
        train_adversarial_generator(classifier, loader, float(epsilon), seed=seed, name=name, **settings)
        for seed, name in enumerate(names)
    ]
    log.info("trained %d adversarial noise generators (eps %.2f, %d steps each)", len(generators), epsilon, cfg.steps)
    return generators, float(epsilon)


def _released_sets(ev: DictConfig, datamodule: ClassificationDataModule) -> list:
    """The released -C files of ``eval.released``, with the training set's class mapping where known."""
    cfg, kind = ev.get("released"), Benchmark.parse(ev.benchmark).reader
    if not cfg or kind is None:
        return []
    kwargs: dict[str, Any] = {}
    if kind in ("cifar10c", "cifar100c"):
        kwargs["verify_md5"] = bool(cfg.get("verify_md5", False))
    class_to_idx = getattr(datamodule.test_set, "class_to_idx", None)
    if kind in ("imagenetc", "tinyimagenetc") and class_to_idx:
        kwargs["class_to_idx"] = class_to_idx
    corruptions = list(cfg.corruptions) if cfg.get("corruptions") else None
    severities = list(cfg.severities) if cfg.get("severities") else None
    return released_c_sets(kind, cfg.root, corruptions, severities, **kwargs)
