"""Task entry points behind ``run.py``: ``task=train`` (fit, then evaluate) and ``task=eval``."""

from __future__ import annotations

import importlib
import logging
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import rich
import rich.syntax
import rich.tree
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException
from pytorch_lightning.callbacks import LearningRateMonitor, ProgressBar
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities import rank_zero_only

from robustnoise.data import ClassificationDataModule
from robustnoise.eval.evaluate import check_eval_config, checkpoint_overrides, evaluate_robustness, generated_preset
from robustnoise.methods.base import RobustClassifierModule
from robustnoise.report.plots import log_image_file, plot_training_curves
from robustnoise.report.training_figures import TrainingFigures
from robustnoise.training.corrupted_validation import corrupted_validation
from robustnoise.training.exact_resume import ExactResume
from robustnoise.utils import launch, resume
from robustnoise.utils.checkpoints import AtomicCheckpointIO
from robustnoise.utils.errors import ConfigError
from robustnoise.utils.instantiate import instantiate, instantiate_dict
from robustnoise.utils.wandb_mode import finish_wandb, prepare_loggers

log = logging.getLogger("robustnoise")


# Lightning warnings the project causes by design (the user cannot act on them), silenced for the run only.
QUIET_WARNINGS = (
    r"[\s\S]*isinstance\(treespec, LeafSpec\)",  # Lightning's tree helpers vs. newer torch: library-internal
    r"Found \d+ module\(s\) in eval mode at the start of training",  # frozen networks (DeepAugment's) by design
    r"The '\w+' does not have many workers",  # data.num_workers is chosen per dataset (0 for the in-memory digits)
    # resuming writes into the run's own directories (the earlier metrics.csv is kept as metrics-<n>.csv)
    r"Checkpoint directory .* exists and is not empty",
    r"Experiment logs directory .* exists and is not empty",
    # mid-epoch checkpoints after the step, with the loop counters, are exactly the state an exact resume needs
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
    report = Path(cfg.paths.output_dir) / "robustness.md"
    if rank_zero_only.rank == 0:
        print(f"run directory: {report.parent}" + (f"  report: {report}" if report.is_file() else ""))
    return summary


def _run_task(cfg: DictConfig) -> dict[str, Any]:
    """``cfg.task`` (train, eval, or a file-writing task of ``conf/<task>.yaml``) on ``cfg.data``."""
    try:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule = instantiate(cfg.data)
        if cfg.task in ("train", "eval"):
            return (train if cfg.task == "train" else evaluate)(cfg, datamodule)
        node = cfg[cfg.task]  # typed options (a structured config); a key added by +<task>.key=... is refused here
        try:
            options = OmegaConf.merge(OmegaConf.get_type(node), OmegaConf.to_container(node, resolve=True))
        except ConfigKeyError as err:
            raise ConfigError(str(err).splitlines()[0]) from None
        task = getattr(importlib.import_module(OmegaConf.get_type(node).__module__), FILE_TASKS[cfg.task])
        return task(OmegaConf.to_object(options), datamodule)
    finally:
        finish_wandb()


# each file-writing task's function, in the module of its options
FILE_TASKS = {"make_c": "make_c", "stylize": "make_stylized", "pretrain_edsr": "pretrain_edsr"}


@rank_zero_only
def print_config_tree(cfg: DictConfig) -> None:
    """The composed config as a rich tree, one branch per group (as lightning-hydra-template's print_config_tree)."""
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException:  # an unresolvable interpolation is reported by the task, in its own words
        container = OmegaConf.to_container(cfg, resolve=False)
    tree = rich.tree.Tree("config", guide_style="dim")
    order = ("task", "data", "model", "method", "trainer", "callbacks", "logger", "eval", "paths")
    for key in sorted(container, key=lambda k: order.index(k) if k in order else len(order)):
        value = container[key]
        text = OmegaConf.to_yaml(value) if isinstance(value, (dict, list)) else str(value)
        tree.add(key, guide_style="dim").add(rich.syntax.Syntax(text, "yaml", theme="ansi_dark"))
    rich.print(tree)


def build_method(cfg: DictConfig, datamodule: ClassificationDataModule, **overrides: Any) -> RobustClassifierModule:
    """The method's LightningModule, with the model and dataset facts as plain values."""
    model_cfg = {**OmegaConf.to_container(cfg.model, resolve=True), **overrides}
    return instantiate(cfg.method, model=model_cfg, data=datamodule.info())


def build_trainer(cfg: DictConfig, with_callbacks: bool = True, extra_callbacks: list | None = None) -> pl.Trainer:
    """The Trainer of ``cfg.trainer``; ``with_callbacks``: the configured ones, exact resume, the training figures."""
    callbacks = [*instantiate_dict(cfg.get("callbacks")), ExactResume(), TrainingFigures()] if with_callbacks else []
    callbacks += extra_callbacks or []
    loggers = instantiate_dict(prepare_loggers(cfg))
    if not loggers:  # nothing to monitor learning rates into (logger=none, debug=fdr)
        callbacks = [cb for cb in callbacks if not isinstance(cb, LearningRateMonitor)]
    if not cfg.trainer.get("enable_progress_bar", True):  # Lightning refuses a progress-bar callback then
        callbacks = [cb for cb in callbacks if not isinstance(cb, ProgressBar)]
    plugins = [AtomicCheckpointIO(), *launch.trainer_plugins()]
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins)


def train(cfg: DictConfig, datamodule: ClassificationDataModule) -> dict[str, Any]:
    ckpt_path = resume.resume_checkpoint(cfg)
    for key in ("max_epochs", "max_steps", "limit_train_batches"):  # a run that would not train reports nothing
        if cfg.trainer.get(key) == 0:
            message = "trains nothing; to evaluate a model without training use task=eval ckpt_path=<file>"
            raise ConfigError(f"trainer.{key}=0 {message}")
    check_eval_config(cfg, datamodule)
    if not getattr(getattr(datamodule, "clean", datamodule), "download", False):  # (downloads happen inside fit)
        datamodule.setup("fit")  # missing data: one line now, not an error inside fit that leaves a checkpoint
    method = build_method(cfg, datamodule)
    if ckpt_path:
        resume.check_resumable(ckpt_path, cfg, method)
        resume.keep_earlier_metrics(cfg.paths.output_dir)
    resume.reuse_wandb_id(cfg, resuming=bool(ckpt_path))
    preset = generated_preset(cfg.eval, datamodule.corruption_preset)
    val_c = corrupted_validation(cfg.eval.get("during_training"), cfg.eval, datamodule.eval_batch_size, preset)
    trainer = build_trainer(cfg, extra_callbacks=[val_c] if val_c else [])
    if trainer.is_global_zero:
        log.info(
            "run directory %s: method=%s data=%s model=%s max_epochs=%s seed=%s", cfg.paths.output_dir,
            cfg.method.name, datamodule.name, cfg.model.name, cfg.trainer.max_epochs, cfg.seed,
        )  # fmt: skip
    for logger in trainer.loggers:
        logger.log_hyperparams({"config": OmegaConf.to_container(cfg, resolve=True)})
    if trainer.world_size > 1 and trainer.is_global_zero:  # data.batch_size is per process: say what it adds up to
        n, world = getattr(datamodule, "batch_size", 0), trainer.world_size
        log.warning(
            "global batch = %d per process x %d processes = %d; the papers' batch on N devices is "
            "data.batch_size=<paper batch>/N (learning rates are not rescaled)", n, world, n * world,
        )  # fmt: skip
    trainer.fit(method, datamodule=datamodule, ckpt_path=ckpt_path)
    _plot_training_curves(trainer, method)
    return evaluate_robustness(cfg, trainer, method, datamodule)


def evaluate(cfg: DictConfig, datamodule: ClassificationDataModule) -> dict[str, Any]:
    """``task=eval``: the evaluation of ``ckpt_path`` or ``model.weights``."""
    overrides = checkpoint_overrides(cfg)
    check_eval_config(cfg, datamodule, read_released=False)  # the evaluation reads (and checks) the files once
    method = build_method(cfg, datamodule, **overrides)
    return evaluate_robustness(cfg, build_trainer(cfg, with_callbacks=False), method, datamodule)


def _plot_training_curves(trainer: pl.Trainer, method: RobustClassifierModule) -> None:
    """``training_curves.png``: clean and corrupted validation accuracy per epoch, from the CSV logger's file."""
    csv = next((logger for logger in trainer.loggers if isinstance(logger, CSVLogger)), None)
    if not trainer.is_global_zero or csv is None:
        return
    parts = sorted(Path(csv.log_dir).glob("metrics-*.csv"), key=lambda p: int(p.stem.split("-")[1]))
    files = [p for p in [*parts, Path(csv.log_dir) / "metrics.csv"] if p.is_file()]  # earlier parts: resumes
    if files and (path := plot_training_curves(files, Path(trainer.default_root_dir) / "training_curves.png")):
        log_image_file(method, "report/training_curves", path)
