"""Sweep summaries: :func:`robustnoise.report.compare.main` over a multirun's jobs (a Hydra callback)."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from robustnoise.report import compare
from robustnoise.utils.errors import is_number

log = logging.getLogger("robustnoise")


def swept_keys(overrides: Iterable[str]) -> list[str]:
    """The keys (or config groups) that ``overrides`` sweep over, in order, ``hydra.*`` left out."""
    swept = [o.key_or_group for o in OverridesParser.create().parse_overrides(list(overrides)) if o.is_sweep_override()]
    return [k for k in dict.fromkeys(swept) if not k.startswith("hydra")]


def plot_key(run_dirs: Sequence[Path], keys: Sequence[str]) -> str | None:
    """The swept key to plot by: the first numeric one, else the first plain one; never ``seed``."""
    plain: str | None = None
    for key in (k for k in keys if k not in compare.SEED_KEYS):
        values = [compare.config_value(d, key) for d in run_dirs]
        if any(isinstance(v, dict) for v in values):  # a config group: use its name
            key = f"{key}.name"
            values = [compare.config_value(d, key) for d in run_dirs]
        if any(v is None or isinstance(v, dict) for v in values):
            continue
        if all(is_number(v) for v in values):
            return key
        plain = plain or key
    return plain


def summarize_sweep(sweep_dir: str | Path, keys: Sequence[str]) -> int:
    """The comparison of the evaluated jobs of ``sweep_dir`` by the swept value; ``compare.main``'s exit code."""
    try:
        run_dirs = compare.expand_run_dirs([sweep_dir])
    except FileNotFoundError as err:
        log.warning("no sweep summary: %s", err)
        return 1
    key = plot_key(run_dirs, keys)
    print(f"\nsweep summary of {len(run_dirs)} jobs in {sweep_dir}" + (f" (swept: {', '.join(keys)})" if keys else ""))
    return compare.main([str(sweep_dir), "--out", str(sweep_dir)] + (["--sweep-key", key] if key else []))


def log_sweep_to_wandb(sweep_dir: str | Path, wandb_cfg: Any) -> Any:
    """A W&B run (job type ``sweep``, in the jobs' group, obeying ``WANDB_MODE``) with the figures and the table."""
    import wandb

    sweep_dir = Path(sweep_dir)
    where = {k: wandb_cfg.get(k) for k in ("project", "entity", "group")}
    mode = "offline" if wandb_cfg.get("offline") else None
    run = wandb.init(**where, job_type="sweep", name=f"sweep_{sweep_dir.name}", dir=str(sweep_dir), mode=mode)
    data: dict[str, Any] = {f"sweep/{png.stem}": wandb.Image(str(png)) for png in sorted(sweep_dir.glob("*.png"))}
    table = sweep_dir / compare.COMPARISON_CSV
    rows = list(csv.reader(table.read_text().splitlines())) if table.is_file() else []
    if rows:
        data["sweep/table"] = wandb.Table(columns=rows[0], data=rows[1:])
    run.log(data)
    run.finish()
    return run


class SweepSummary(Callback):
    """Hydra callback: the sweep summary at the end of a multirun (and in W&B, with the W&B logger)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            sweep_dir, hydra_cfg = Path(str(config.hydra.sweep.dir)), config.hydra
            overrides = [str(o) for o in hydra_cfg.overrides.get("task", [])]  # plus the sweeps given in config
            overrides += [f"{k}={v}" for k, v in (OmegaConf.select(hydra_cfg, "sweeper.params") or {}).items()]
            summarize_sweep(sweep_dir, swept_keys(overrides))
            wandb_cfg = OmegaConf.select(config, "logger.wandb", default=None)
            if wandb_cfg is not None and os.environ.get("WANDB_MODE") != "disabled":
                log_sweep_to_wandb(sweep_dir, wandb_cfg)
        except Exception as err:  # a summary must never turn a finished sweep into a failure
            log.warning("could not write the sweep summary: %s", err)
