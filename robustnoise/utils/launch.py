"""How a job was launched, and what that means for DDP, requeueing and resuming.

- Local multirun (Hydra's basic launcher, ``-m``) cannot run multi-device DDP jobs: Lightning starts ranks >= 1 by
  re-running ``sys.argv``, so every rank would run the whole sweep in its own sweep directory. Such a job stops before
  it starts with one line telling what to do instead (:func:`check_multirun_ddp`).
- Jobs of ``hydra/launcher=slurm`` (``conf/hydra/launcher/slurm.yaml``) are requeued by submitit: on SLURM's
  pre-timeout / preemption signal it resubmits the same job with the same overrides, hence the same job directory.
  Exactly one requeue mechanism must act, so Lightning's own SLURM auto-requeue is switched off in those jobs
  (:func:`trainer_plugins`), and a training job without ``ckpt_path`` resumes from its last checkpoint
  (:func:`requeue_resume`; nothing to resume on the first start, then Lightning starts fresh).
"""

from __future__ import annotations

import os
from typing import Any

from omegaconf import DictConfig, ListConfig, open_dict

from robustnoise.utils.errors import ConfigError

SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


def processes_per_job(trainer: DictConfig | dict) -> int:
    """Number of training processes a trainer config asks for: devices (count, list or ``"0,1"``) times nodes;
    ``devices=-1`` / ``"auto"`` count the visible GPUs (one process on the CPU)."""
    devices: Any = trainer.get("devices", 1)
    nodes = int(trainer.get("num_nodes", 1) or 1)
    if isinstance(devices, (list, tuple, ListConfig)):
        count = len(devices)
    elif isinstance(devices, str) and "," in devices:
        count = len([d for d in devices.split(",") if d.strip()])
    elif str(devices).strip() in ("auto", "-1"):
        count = 1
        if str(trainer.get("accelerator", "auto")) in ("auto", "gpu", "cuda"):
            import torch

            count = max(torch.cuda.device_count(), 1)
    else:
        count = int(devices)
    return max(count, 1) * max(nodes, 1)


def check_multirun_ddp(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for a multirun job that would start DDP ranks by re-running the command line
    (any launcher but submitit's SLURM one, which starts one process per device itself; ``*_spawn`` strategies are
    left alone: they do not re-run the command)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or "trainer" not in cfg:
        return
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN or hydra_cfg.launcher.get("_target_") == SLURM_LAUNCHER:
        return
    processes = processes_per_job(cfg.trainer)
    if processes <= 1 or "spawn" in str(cfg.trainer.get("strategy", "")):
        return
    raise ConfigError(
        f"a multirun (-m) with {processes} DDP processes per job (trainer.devices x trainer.num_nodes) cannot run "
        "locally: Lightning would re-run the whole sweep in every rank; submit it with hydra/launcher=slurm "
        "(pip install -e '.[slurm]'), or run the jobs one by one without -m"
    )


def submitit_slurm_job() -> bool:
    """True in a job that submitit's SLURM executor started (``hydra/launcher=slurm``)."""
    return os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and "SLURM_JOB_ID" in os.environ


def trainer_plugins() -> list[Any]:
    """Trainer plugins for the launch mode: in submitit SLURM jobs, Lightning's SLURM environment with its
    auto-requeue off (submitit requeues; two mechanisms would both act on a timeout)."""
    if not submitit_slurm_job():
        return []
    from pytorch_lightning.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)]


def requeue_resume(cfg: DictConfig) -> None:
    """In submitit SLURM training jobs without ``ckpt_path``: ``ckpt_path=last``, so a requeued job continues from
    the last checkpoint of its (deterministic) job directory."""
    if submitit_slurm_job() and cfg.get("task") == "train" and not cfg.get("ckpt_path"):
        with open_dict(cfg):
            cfg.ckpt_path = "last"
