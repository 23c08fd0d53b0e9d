"""Resuming a training run: which checkpoint, whether it fits the configured model, the W&B run to continue."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, open_dict
from pytorch_lightning.utilities import rank_zero_only

from robustnoise.utils.errors import CheckpointError

log = logging.getLogger("robustnoise")


def resume_checkpoint(cfg: DictConfig) -> str | None:
    """``resume=true``: the newest readable checkpoint; else ``ckpt_path`` (a new run into checkpoints is refused)."""
    ckpt = cfg.get("ckpt_path")
    run_dir = Path(cfg.paths.output_dir)
    if cfg.get("resume") or ckpt == "last":
        path, skipped = resumable_checkpoint(run_dir)
        if path is None and skipped:
            raise CheckpointError(f"resume: no checkpoint in {run_dir / 'checkpoints'} can be read ({skipped})")
        if path is None:
            log.warning("resume: no earlier run of this command has a checkpoint (%s); starting a new run", run_dir)
            return None
        if skipped and rank_zero_only.rank == 0:
            log.warning("resume: %s; continuing from %s", skipped, path)
        log.info("resuming from %s", path)
        return str(path)
    if ckpt and not Path(ckpt).is_file():
        raise CheckpointError(f"checkpoint not found: {ckpt}")
    existing = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    if existing and not (ckpt and Path(ckpt).resolve().parent == (run_dir / "checkpoints").resolve()):
        raise CheckpointError(
            f"the run directory {run_dir} already holds checkpoints ({', '.join(existing)}); add resume=true to "
            "continue that run, or choose another hydra.run.dir"
        )
    return ckpt


def checkpoint_files(run_dir: str | Path) -> list[Path]:
    """The checkpoints a run can resume from, ``last.ckpt`` first, then newest first (not on_exception.ckpt)."""
    files = [p for p in (Path(run_dir) / "checkpoints").glob("*.ckpt") if p.name != "on_exception.ckpt"]
    return sorted(files, key=lambda p: (p.name == "last.ckpt", p.stat().st_mtime), reverse=True)


def resumable_checkpoint(run_dir: str | Path) -> tuple[Path | None, str]:
    """The first readable checkpoint of :func:`checkpoint_files` (or None) and why the ones before it were not."""
    problems = []
    for path in checkpoint_files(run_dir):
        try:
            _load(path)
            return path, "; ".join(problems)
        except CheckpointError as err:
            problems.append(str(err))
    return None, "; ".join(problems)


def _load(path: str | Path) -> dict[str, Any]:
    """A training checkpoint of this project (tensors and plain values only: a pickle that runs code is refused)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        first = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first}") from None  # torch's first sentence
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a training checkpoint of this project (use model.weights= for weights)")
    return ckpt


def saved_hparams(path: str | Path) -> dict[str, Any]:
    """The hyper-parameters stored in one of our checkpoints (empty for other weight files)."""
    try:
        return _load(path).get("hyper_parameters") or {}
    except CheckpointError:  # not ours or not loadable here: the caller's loader reports it
        return {}


def check_resumable(path: str, cfg: DictConfig, method: pl.LightningModule) -> None:
    """One line instead of Lightning's traceback when the checkpoint holds another model, method or class count."""
    ckpt = _load(path)
    hparams = ckpt.get("hyper_parameters") or {}
    saved = (hparams.get("model") or {}).get("name")
    if saved and saved != cfg.model.name:
        raise CheckpointError(f"checkpoint {path} holds a {saved}, the config asks for {cfg.model.name}")
    own = method.state_dict()
    expected, found = set(own), set(ckpt["state_dict"])
    if expected != found:
        extra, missing = sorted(found - expected), sorted(expected - found)
        raise CheckpointError(
            f"checkpoint {path} was written by method={hparams.get('name', '?')}, the config asks for "
            f"method={cfg.method.name} ({len(missing)} missing keys, e.g. {missing[:2]}; "
            f"{len(extra)} unexpected, e.g. {extra[:2]})"
        )
    for key in sorted(expected):
        theirs, ours = tuple(ckpt["state_dict"][key].shape), tuple(own[key].shape)
        if theirs != ours:
            classes = ((hparams.get("data") or {}).get("num_classes"), method.hparams["data"]["num_classes"])
            why = f"trained for {classes[0]} classes, the data has {classes[1]}" if classes[0] != classes[1] else ""
            raise CheckpointError(
                f"checkpoint {path} does not fit the configured model{': ' if why else ''}{why} "
                f"({key}: {list(theirs)} in the checkpoint, {list(ours)} in the model)"
            )


def keep_earlier_metrics(run_dir: str | Path) -> None:
    """On resume, move the earlier ``metrics.csv`` to ``metrics-<n>.csv`` (Lightning's CSVLogger deletes it)."""
    if rank_zero_only.rank != 0:
        return
    for metrics in Path(run_dir).glob("*/metrics.csv"):
        part = next(k for k in itertools.count(1) if not (metrics.parent / f"metrics-{k}.csv").exists())
        metrics.rename(metrics.parent / f"metrics-{part}.csv")


def reuse_wandb_id(cfg: DictConfig, resuming: bool) -> None:
    """On resume, continue the run directory's newest W&B run (``wandb/*run-*-<id>``) unless ``logger.wandb.id``."""
    loggers = cfg.get("logger")
    if not resuming or not loggers or "wandb" not in loggers or loggers.wandb.get("id"):
        return
    runs = sorted((Path(cfg.paths.output_dir) / "wandb").glob("*run-*-*"), key=lambda p: p.stat().st_mtime)
    if runs:
        with open_dict(cfg):
            cfg.logger.wandb.id = runs[-1].name.rsplit("-", 1)[1]
        log.info("continuing W&B run %s", cfg.logger.wandb.id)
