"""How a job was launched: local multirun cannot run multi-device DDP (Lightning starts ranks >= 1 by re-running
``sys.argv``: every rank would run the sweep); ``hydra/launcher=slurm`` jobs are requeued by submitit into the same
directory, so Lightning's SLURM auto-requeue is off and training resumes from the last checkpoint."""

from __future__ import annotations

import os
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, open_dict

from robustnoise.utils.errors import ConfigError

SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


def processes_per_job(trainer: DictConfig | dict) -> int:
    """Training processes of a trainer config: devices (``-1``/``auto``: visible GPUs, 1 on CPU) x nodes."""
    devices: Any = trainer.get("devices", 1)
    if isinstance(devices, str) and "," in devices:
        devices = [d for d in devices.split(",") if d.strip()]
    if str(devices).strip() in ("auto", "-1"):
        count = torch.cuda.device_count() if str(trainer.get("accelerator", "auto")) in ("auto", "gpu", "cuda") else 1
    else:
        count = len(devices) if isinstance(devices, (list, tuple, ListConfig)) else int(devices)
    return max(count, 1) * max(int(trainer.get("num_nodes", 1) or 1), 1)


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA if available, else the CPU; any other name as given (``cpu``, ``cuda:1``)."""
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)


def check_multirun_ddp(cfg: DictConfig) -> None:
    """A :class:`ConfigError` for a local multirun job with several DDP processes (not SLURM, not spawn)."""
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
    """In submitit SLURM jobs, Lightning's SLURM environment with auto-requeue off (submitit requeues)."""
    if not submitit_slurm_job():
        return []
    from pytorch_lightning.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)]


def requeue_resume(cfg: DictConfig) -> None:
    """``ckpt_path=last`` in submitit SLURM training jobs without one: a requeued job continues where it stopped."""
    if submitit_slurm_job() and cfg.get("task") == "train" and not cfg.get("ckpt_path"):
        with open_dict(cfg):
            cfg.ckpt_path = "last"
