"""Resuming a training run: which checkpoint, whether it fits the configured model, and the W&B run to continue.

``resume=true`` (or ``ckpt_path=last``) makes ``hydra.run.dir`` the newest earlier run of the same command
(``robustnoise.utils.resolvers.run_dir``); training then continues from that directory's ``checkpoints/last.ckpt``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, open_dict
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from robustnoise.utils.errors import CheckpointError

log = logging.getLogger("robustnoise")

LIGHTNING_CKPT_NAMES = ("best", "hpc", "registry")  # names Lightning resolves itself
WANDB_ID_FILE = "wandb_id"


def resume_checkpoint(cfg: DictConfig) -> str | None:
    """The checkpoint ``trainer.fit`` resumes from: ``<run dir>/checkpoints/last.ckpt`` for ``resume=true`` or
    ``ckpt_path=last`` (None, with a warning, when there is nothing to resume), else ``ckpt_path``."""
    ckpt = cfg.get("ckpt_path")
    if cfg.get("resume") or ckpt == "last":
        last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        if not last.is_file():
            log.warning("resume: no earlier run of this command has a checkpoint (%s); starting a new run", last)
            return None
        log.info("resuming from %s", last)
        return str(last)
    if ckpt and ckpt not in LIGHTNING_CKPT_NAMES and not Path(ckpt).is_file():
        raise CheckpointError(f"checkpoint not found: {ckpt}")
    return ckpt


def saved_hparams(path: str | Path) -> dict[str, Any] | None:
    """The hyper-parameters stored in one of our checkpoints (None for other weight files)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not ours or not loadable here: the caller's loader reports it
        return None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    return hparams if isinstance(hparams, dict) else None


def check_resumable(path: str, cfg: DictConfig, method: pl.LightningModule) -> None:
    """One line instead of Lightning's state-dict traceback when the checkpoint holds another model or method."""
    if path in LIGHTNING_CKPT_NAMES:
        return
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a training checkpoint of this project (use model.weights= for weights)")
    hparams = ckpt.get("hyper_parameters") or {}
    saved = (hparams.get("model") or {}).get("name")
    if saved and saved != cfg.model.name:
        raise CheckpointError(f"checkpoint {path} holds a {saved}, the config asks for {cfg.model.name}")
    expected, found = set(method.state_dict()), set(ckpt["state_dict"])
    if expected != found:
        extra, missing = sorted(found - expected), sorted(expected - found)
        raise CheckpointError(
            f"checkpoint {path} was written by method={hparams.get('name', '?')}, the config asks for "
            f"method={cfg.method.name} ({len(missing)} missing keys, e.g. {missing[:2]}; "
            f"{len(extra)} unexpected, e.g. {extra[:2]})"
        )


def keep_earlier_metrics(run_dir: str | Path) -> None:
    """Lightning's CSVLogger deletes ``metrics.csv`` when it starts in a run directory: on resume, the earlier rows
    move to ``metrics-<n>.csv`` next to it first (rank zero)."""
    if rank_zero_only.rank != 0:
        return
    for metrics in Path(run_dir).glob("*/metrics.csv"):
        part = 1
        while (metrics.parent / f"metrics-{part}.csv").exists():
            part += 1
        metrics.rename(metrics.parent / f"metrics-{part}.csv")


def reuse_wandb_id(cfg: DictConfig, resuming: bool) -> None:
    """On resume, continue the W&B run recorded in the run directory (unless ``logger.wandb.id`` is given)."""
    loggers = cfg.get("logger")
    if not resuming or not loggers or "wandb" not in loggers or loggers.wandb.get("id"):
        return
    path = Path(cfg.paths.output_dir) / WANDB_ID_FILE
    if path.is_file():
        with open_dict(cfg):
            cfg.logger.wandb.id = path.read_text().strip()
        log.info("continuing W&B run %s", cfg.logger.wandb.id)


def remember_wandb_id(trainer: pl.Trainer, run_dir: str | Path) -> None:
    """Write the W&B run id into the run directory (rank zero), for :func:`reuse_wandb_id`."""
    if rank_zero_only.rank != 0:
        return
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and logger.version:
            path = Path(run_dir) / WANDB_ID_FILE
            tmp = path.with_suffix(".tmp")
            tmp.write_text(f"{logger.version}\n")
            os.replace(tmp, path)
