"""Task entry points behind ``run.py``: ``task=train`` (fit, then evaluate) and ``task=eval``."""

from __future__ import annotations

import importlib
import logging
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException
from pytorch_lightning.callbacks import LearningRateMonitor, ProgressBar
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.data import DataLoader

from robustnoise.corruptions.presets import check_severity
from robustnoise.corruptions.transforms import corruption_seed_key
from robustnoise.data import ClassificationDataModule
from robustnoise.data.released_c import check_matches_clean, released_c_sets
from robustnoise.eval.attacks import ATTACKS, robust_accuracy
from robustnoise.eval.suite import CorruptionSuite
from robustnoise.methods.base import RobustClassifierModule
from robustnoise.metrics import IncompleteBenchmarkWarning, robustness_summary
from robustnoise.noise.adversarial import train_adversarial_generator
from robustnoise.noise.calibration import epsilon_for_sigma
from robustnoise.report.plots import log_image_file, plot_training_curves
from robustnoise.report.reporting import format_table, write_report
from robustnoise.training.corrupted_validation import corrupted_validation
from robustnoise.utils import launch
from robustnoise.utils.checkpoints import AtomicCheckpointIO
from robustnoise.utils.errors import ConfigError, RobustnoiseError
from robustnoise.utils.instantiate import instantiate, instantiate_dict
from robustnoise.utils.resume import (
    check_resumable,
    keep_earlier_metrics,
    remember_wandb_id,
    resume_checkpoint,
    reuse_wandb_id,
    saved_hparams,
)
from robustnoise.utils.wandb_mode import finish_wandb, prepare_loggers

log = logging.getLogger("robustnoise")


# Lightning warnings the project causes by design (the user cannot act on them), silenced for the run only.
QUIET_WARNINGS = (
    # Lightning's tree helpers vs. newer torch: a library-internal deprecation, fixed by a Lightning release
    r"[\s\S]*isinstance\(treespec, LeafSpec\)",
    # frozen networks stay in eval mode by design (DeepAugment's distorted image-to-image network)
    r"Found \d+ module\(s\) in eval mode at the start of training",
    # workers are chosen per dataset in conf/data (data.num_workers; 0 for the in-memory digits on purpose)
    r"The '\w+' does not have many workers",
    # resuming continues writing into the run's own directories (the earlier metrics.csv is kept as metrics-<n>.csv)
    r"Checkpoint directory .* exists and is not empty",
    r"Experiment logs directory .* exists and is not empty",
    # our mid-epoch checkpoints are written after the step on purpose: with the loop counters that is exactly the
    # state an exact resume needs
    r"Using ModelCheckpoint with manual optimization and every_n_train_steps",
)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run the configured task and return its summary metrics."""
    launch.check_multirun_ddp(cfg)
    launch.requeue_resume(cfg)
    with warnings.catch_warnings():
        for message in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        print_config_tree(cfg)
        summary = _run_task(cfg)
    out_dir = cfg.paths.output_dir
    report = Path(out_dir) / "robustness.md"
    if rank_zero_only.rank == 0:
        print(f"run directory: {out_dir}" + (f"  report: {report}" if report.is_file() else ""))
    return summary


def _run_task(cfg: DictConfig) -> dict[str, Any]:
    """``cfg.task`` (train, eval, or a file-writing task of ``conf/<task>.yaml``) on ``cfg.data``."""
    try:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule = _instantiate(cfg.data)
        if cfg.task in ("train", "eval"):
            return (train if cfg.task == "train" else evaluate)(cfg, datamodule)
        module, function = FILE_TASKS[cfg.task].split(":")
        node = cfg[cfg.task]  # typed options (a structured config); a key added by +<task>.key=... is refused here
        try:
            options = OmegaConf.merge(OmegaConf.get_type(node), OmegaConf.to_container(node, resolve=True))
        except ConfigKeyError as err:
            raise ConfigError(str(err).splitlines()[0]) from None
        return getattr(importlib.import_module(module), function)(OmegaConf.to_object(options), datamodule)
    finally:
        finish_wandb()


FILE_TASKS = {
    "make_c": "robustnoise.corruptions.make_c:make_c",
    "stylize": "robustnoise.stylize.make_stylized:make_stylized",
    "pretrain_edsr": "robustnoise.pretrain_edsr:pretrain_edsr",
}


CONFIG_TREE_ORDER = ("task", "data", "model", "method", "trainer", "callbacks", "logger", "eval", "paths")


@rank_zero_only
def print_config_tree(cfg: DictConfig) -> None:
    """The composed config as a rich tree, one branch per group (as lightning-hydra-template's print_config_tree)."""
    import rich
    import rich.syntax
    import rich.tree

    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException:  # an unresolvable interpolation is reported by the task, in its own words
        container = OmegaConf.to_container(cfg, resolve=False)
    tree = rich.tree.Tree("config", guide_style="dim")
    rest = [k for k in container if k not in CONFIG_TREE_ORDER]
    for key in [*(k for k in CONFIG_TREE_ORDER if k in container), *rest]:
        value = container[key]
        text = OmegaConf.to_yaml(value) if isinstance(value, (dict, list)) else str(value)
        tree.add(key, guide_style="dim").add(rich.syntax.Syntax(text, "yaml", theme="ansi_dark"))
    rich.print(tree)


def _instantiate(node: DictConfig, **kwargs: Any) -> Any:
    """Instantiate, surfacing our own one-line errors instead of Hydra's wrapper exception."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, RobustnoiseError):
            raise cause from None
        raise


def build_method(cfg: DictConfig, datamodule: ClassificationDataModule, **overrides: Any) -> RobustClassifierModule:
    """The method's LightningModule, with the model and dataset facts as plain values."""
    model_cfg = {**OmegaConf.to_container(cfg.model, resolve=True), **overrides}
    return _instantiate(cfg.method, model=model_cfg, data=datamodule.info())


def build_trainer(cfg: DictConfig, with_callbacks: bool = True, extra_callbacks: list | None = None) -> pl.Trainer:
    callbacks = instantiate_dict(cfg.get("callbacks")) if with_callbacks else []
    callbacks += extra_callbacks or []
    loggers = instantiate_dict(prepare_loggers(cfg))
    if not loggers:  # nothing to monitor learning rates into (logger=none, debug=fdr)
        callbacks = [cb for cb in callbacks if not isinstance(cb, LearningRateMonitor)]
    if not cfg.trainer.get("enable_progress_bar", True):  # Lightning refuses a progress-bar callback then
        callbacks = [cb for cb in callbacks if not isinstance(cb, ProgressBar)]
    plugins = [AtomicCheckpointIO(), *launch.trainer_plugins()]
    return _instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins)


def train(cfg: DictConfig, datamodule: ClassificationDataModule) -> dict[str, Any]:
    ckpt_path = resume_checkpoint(cfg)
    check_trainer_config(cfg)
    check_eval_config(cfg, datamodule)
    if not getattr(getattr(datamodule, "clean", datamodule), "download", False):  # (downloads happen inside fit)
        datamodule.setup("fit")  # missing data: one line now, not an error inside fit that leaves a checkpoint
    method = build_method(cfg, datamodule)
    if ckpt_path:
        check_resumable(ckpt_path, cfg, method)
        keep_earlier_metrics(cfg.paths.output_dir)
    reuse_wandb_id(cfg, resuming=bool(ckpt_path))
    val_c = corrupted_validation(cfg.eval.get("during_training"), cfg.eval, datamodule.eval_batch_size)
    trainer = build_trainer(cfg, extra_callbacks=[val_c] if val_c else [])
    if trainer.is_global_zero:
        log.info(
            "run directory %s: method=%s data=%s model=%s max_epochs=%s seed=%s",
            cfg.paths.output_dir, cfg.method.name, datamodule.name, cfg.model.name, cfg.trainer.max_epochs, cfg.seed,
        )  # fmt: skip
    _log_config(trainer, cfg)
    remember_wandb_id(trainer, cfg.paths.output_dir)
    if trainer.world_size > 1 and trainer.is_global_zero:  # data.batch_size is per process: say what it adds up to
        batch = getattr(datamodule, "batch_size", 0)
        log.warning(
            "global batch = %d per process x %d processes = %d; the papers' batch on N devices is "
            "data.batch_size=<paper batch>/N (learning rates are not rescaled)",
            batch, trainer.world_size, batch * trainer.world_size,
        )  # fmt: skip
    trainer.fit(method, datamodule=datamodule, ckpt_path=ckpt_path)
    _plot_training_curves(trainer, method)
    return evaluate_robustness(cfg, trainer, method, datamodule)


def check_trainer_config(cfg: DictConfig) -> None:
    """A training run that would not train is refused (it would report an untrained model as a result)."""
    for key in ("max_epochs", "max_steps", "limit_train_batches"):
        if cfg.trainer.get(key) == 0:
            raise ConfigError(
                f"trainer.{key}=0 trains nothing; to evaluate a model without training use task=eval ckpt_path=<file>"
            )


def check_eval_config(cfg: DictConfig, datamodule: ClassificationDataModule, read_released: bool = True) -> None:
    """Corruptions, severities and released -C set (kind against the clean data; its files if ``read_released``) of
    the final evaluation, checked before training, not after.

    Empty lists: ``eval.severities=[]`` with corruptions and an empty ``eval.released.corruptions`` / ``severities``
    are errors (nothing asked for would be evaluated); ``eval.corruptions=[]`` alone is clean accuracy (as
    ``eval=none``) and says so in a warning line.
    """
    ev = cfg.eval
    released = ev.get("released") or {}
    if ev.corruptions and not ev.severities:
        raise ConfigError(
            f"eval.severities is empty: the corruptions {list(ev.corruptions)} would be evaluated at no severity "
            "(give severities in 1..5, e.g. eval.severities=[1,2,3,4,5])"
        )
    for key in ("corruptions", "severities"):
        if released.get(key) is not None and len(released[key]) == 0:
            raise ConfigError(
                f"eval.released.{key} is empty: no released set would be evaluated "
                f"(null takes every {key[:-1] if key == 'severities' else 'corruption'} found under eval.released.root)"
            )
    if not ev.corruptions and not released.get("kind"):
        log.warning("eval.corruptions is empty and no released -C set is configured: only clean accuracy is evaluated")
    for severity in ev.severities:
        check_severity(severity)
    for name in ev.corruptions:
        corruption_seed_key(name)
    if any(float(s) < 0 for s in ev.get("gaussian_sigmas") or []):
        raise ConfigError(f"eval.gaussian_sigmas must be >= 0, got {list(ev.gaussian_sigmas)}")
    if released.get("kind"):
        dm = datamodule
        check_matches_clean(released.kind, dm.name, dm.num_classes, dm.in_chans, dm.image_size)
        if read_released:
            _released_sets(released, datamodule)


def evaluate(cfg: DictConfig, datamodule: ClassificationDataModule) -> dict[str, Any]:
    """Evaluate ``ckpt_path`` (our checkpoint or any weight file the model loader accepts) or ``model.weights``."""
    overrides: dict[str, Any] = {}
    ckpt = cfg.get("ckpt_path")
    if ckpt:
        if not Path(ckpt).is_file():
            raise RobustnoiseError(f"checkpoint not found: {ckpt}")
        overrides["weights"] = str(ckpt)
        saved_model = (saved_hparams(ckpt) or {}).get("model")
        if saved_model and saved_model.get("name") != cfg.model.name:
            log.info("using the architecture stored in the checkpoint: %s", saved_model["name"])
            overrides["name"] = saved_model["name"]
    elif not cfg.model.get("weights"):
        raise RobustnoiseError("task=eval needs ckpt_path=<file> or model.weights=<file|torchvision>")
    check_eval_config(cfg, datamodule, read_released=False)  # the evaluation reads (and checks) the files once
    method = build_method(cfg, datamodule, **overrides)
    trainer = build_trainer(cfg, with_callbacks=False)
    return evaluate_robustness(cfg, trainer, method, datamodule)


def evaluate_robustness(
    cfg: DictConfig, trainer: pl.Trainer, method: RobustClassifierModule, datamodule: ClassificationDataModule
) -> dict[str, Any]:
    """Clean + corrupted accuracy of the test split; writes robustness.{csv,json} in the run directory."""
    ev = cfg.eval
    generators, noise_epsilon = adversarial_generators(ev.get("adversarial_noise") or {}, method, datamodule)
    suite = corruption_suite(ev, datamodule, generators, noise_epsilon)
    method.test_suite = suite
    trainer.test(method, dataloaders=suite.dataloaders(), verbose=False)
    accuracies = suite.accuracies()
    meta: dict[str, Any] = {
        "method": cfg.method.name,
        "run_name": cfg.run_name,
        "model": cfg.model.name,
        "data": datamodule.name,
        "seed": cfg.get("seed"),
    }
    report: dict[str, Any] = {}
    if trainer.is_global_zero:
        meta = evaluation_meta(ev, suite, method.classifier, datamodule, meta)
        out_dir = Path(trainer.default_root_dir)
        report = write_report(accuracies, out_dir, meta)
        for figure in ("severity_curves", "heatmap"):  # the report's plots, for W&B dashboards
            if (out_dir / f"{figure}.png").is_file():
                log_image_file(method, f"report/{figure}", out_dir / f"{figure}.png")
        print(format_table([report], [cfg.run_name]))
        log.info("robustness report written to %s", out_dir)
        _log_tables(trainer, accuracies)
    return report


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
        preset=ev.preset,
        seed=ev.seed,
        batch_size=ev.batch_size,
        num_workers=datamodule.num_workers,
        released=_released_sets(ev.get("released"), datamodule),
        eps_star=OmegaConf.to_container(ev.eps_star) if ev.get("eps_star") else None,
        noise_generators=generators,
        noise_epsilon=noise_epsilon,
        gaussian_sigmas=list(ev.get("gaussian_sigmas") or []),
        benchmark=ev.get("benchmark", "generated"),
    )


def evaluation_meta(
    ev: DictConfig,
    suite: CorruptionSuite,
    classifier: torch.nn.Module,
    datamodule: ClassificationDataModule,
    meta: dict[str, Any],
) -> dict[str, Any]:
    """``meta`` (who was evaluated) plus what the report holds beyond the accuracies: the benchmark and preset, its
    metrics, the adversarial-noise results and the attacks of ``eval.attacks`` (run here, on rank 0)."""
    preset = ev.preset if list(ev.corruptions) else None
    meta = {**meta, "benchmark": ev.get("benchmark", "generated"), "preset": preset}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IncompleteBenchmarkWarning)  # partial sets are normal for generated evals
        meta["metrics"] = robustness_summary(suite.accuracies(), benchmark=meta["benchmark"])
    meta.update(suite.adversarial_results())
    attacks = ev.get("attacks") or {}
    if attacks.get("enabled"):
        meta["attacks"] = {
            name: robust_accuracy(
                classifier, datamodule.test_dataloader(), name, attacks[name], attacks.get("max_images")
            )
            for name in ATTACKS
            if attacks.get(name)
        }
    return meta


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
    generators = [
        train_adversarial_generator(
            classifier,
            loader,
            float(epsilon),
            kernel=cfg.kernel,
            steps=cfg.steps,
            lr=cfg.lr,
            seed=seed,
            name=f"eval: adversarial noise generator {seed + 1}/{cfg.seeds}",
        )  # fmt: skip
        for seed in range(cfg.seeds)
    ]
    log.info("trained %d adversarial noise generators (eps %.2f, %d steps each)", len(generators), epsilon, cfg.steps)
    return generators, float(epsilon)


def _released_sets(cfg: DictConfig | None, datamodule: ClassificationDataModule) -> list:
    """The released -C files to evaluate (``eval.released``), with the training set's class mapping where known."""
    if not cfg or not cfg.get("kind"):
        return []
    kwargs: dict[str, Any] = {}
    if cfg.kind in ("cifar10c", "cifar100c"):
        kwargs["verify_md5"] = bool(cfg.get("verify_md5", False))
    class_to_idx = getattr(datamodule.test_set, "class_to_idx", None) if datamodule.test_set is not None else None
    if cfg.kind in ("imagenetc", "tinyimagenetc") and class_to_idx:
        kwargs["class_to_idx"] = class_to_idx
    corruptions = list(cfg.corruptions) if cfg.get("corruptions") else None
    severities = list(cfg.severities) if cfg.get("severities") else None
    return released_c_sets(cfg.kind, cfg.root, corruptions, severities, **kwargs)


def _plot_training_curves(trainer: pl.Trainer, method: RobustClassifierModule) -> None:
    """``training_curves.png``: clean and corrupted validation accuracy per epoch, from the CSV logger's file."""
    if not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        if not isinstance(logger, CSVLogger):
            continue
        parts = sorted(Path(logger.log_dir).glob("metrics-*.csv"), key=lambda p: int(p.stem.split("-")[1]))
        files = [p for p in [*parts, Path(logger.log_dir) / "metrics.csv"] if p.is_file()]  # earlier parts: resumes
        if files:
            path = plot_training_curves(files, Path(trainer.default_root_dir) / "training_curves.png")
            if path is not None:
                log_image_file(method, "report/training_curves", path)
            return


def _log_config(trainer: pl.Trainer, cfg: DictConfig) -> None:
    container = OmegaConf.to_container(cfg, resolve=True)
    for logger in trainer.loggers:
        logger.log_hyperparams({"config": container})


def _log_tables(trainer: pl.Trainer, accuracies: dict[str, dict[str, float]]) -> None:
    rows = [[k, v["top1"], v["top5"], v["n"]] for k, v in accuracies.items()]
    for logger in trainer.loggers:
        if hasattr(logger, "log_table"):
            logger.log_table(key="test_c/table", columns=["set", "top1", "top5", "n"], data=rows)
