"""Sweep summaries: ``python run.py -m method=gnt method.sigma=0.1,0.3,0.5`` ends with one table over its jobs.

:class:`SweepSummary` (a Hydra callback, ``hydra.callbacks`` in ``conf/hydra/default.yaml``) runs
:func:`robustnoise.report.compare.main` on the sweep directory, ordered and plotted by the swept key (:func:`plot_key`);
jobs that differ only in ``seed`` are one group. Later, or for a partly finished sweep:
``python -m robustnoise.compare <sweep dir> --sweep-key KEY``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("robustnoise")


def swept_keys(overrides: Iterable[str]) -> list[str]:
    """The keys (or config groups) that ``overrides`` sweep over (``k=a,b``, ``range(...)``, ``glob(...)``), in
    order; ``hydra.*`` keys are left out."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys: list[str] = []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if override.is_sweep_override() and not key.startswith("hydra") and key not in keys:
            keys.append(key)
    return keys


def sweep_overrides(config: DictConfig) -> list[str]:
    """The task overrides of a multirun plus the sweeps given in config (``hydra.sweeper.params``)."""
    hydra_cfg = config.hydra
    overrides = [str(o) for o in hydra_cfg.overrides.get("task", [])]
    params = OmegaConf.select(hydra_cfg, "sweeper.params", default=None)
    if params:
        overrides += [f"{key}={value}" for key, value in params.items()]
    return overrides


def plot_key(run_dirs: Sequence[Path], keys: Sequence[str]) -> str | None:
    """The swept key to order and plot by: the first with numeric values in every job, else the first with plain
    values (strings, lists); a swept config group ``g`` stands for ``g.name`` when the group has one. ``seed`` is
    never the axis: runs that differ only in it are one group (a mean and a band) in the comparison."""
    from robustnoise.report.compare import SEED_KEYS, config_value

    plain: str | None = None
    for key in keys:
        if key in SEED_KEYS:  # seeds are not an axis: they form the groups of the comparison
            continue
        values = [config_value(d, key) for d in run_dirs]
        if any(isinstance(v, dict) for v in values):  # a config group: use its name
            key = f"{key}.name"
            values = [config_value(d, key) for d in run_dirs]
        if any(v is None or isinstance(v, dict) for v in values):
            continue
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            return key
        plain = plain or key
    return plain


def summarize_sweep(sweep_dir: str | Path, keys: Sequence[str]) -> int:
    """Write and print the comparison of the evaluated jobs of ``sweep_dir``, ordered and plotted by the swept value;
    returns :func:`robustnoise.compare.main`'s exit code (1: no job wrote a report)."""
    from robustnoise.report import compare

    sweep_dir = Path(sweep_dir)
    try:
        run_dirs = compare.expand_run_dirs([sweep_dir])
    except FileNotFoundError as err:
        log.warning("no sweep summary: %s", err)
        return 1
    key = plot_key(run_dirs, keys)
    argv = [str(sweep_dir), "--out", str(sweep_dir)] + (["--sweep-key", key] if key else [])
    print(f"\nsweep summary of {len(run_dirs)} jobs in {sweep_dir}" + (f" (swept: {', '.join(keys)})" if keys else ""))
    return compare.main(argv)


def log_sweep_to_wandb(sweep_dir: str | Path, wandb_cfg: Any) -> Any:
    """One W&B run (job type ``sweep``) in the jobs' group holding the sweep's figures and its comparison table;
    returns the finished run. ``WANDB_MODE`` (set offline by the jobs when W&B is unreachable) is obeyed."""
    import csv

    import wandb

    from robustnoise.report.compare import COMPARISON_CSV

    sweep_dir = Path(sweep_dir)
    run = wandb.init(
        project=wandb_cfg.get("project"),
        entity=wandb_cfg.get("entity"),
        group=wandb_cfg.get("group"),
        job_type="sweep",
        name=f"sweep_{sweep_dir.name}",
        dir=str(sweep_dir),
        mode="offline" if wandb_cfg.get("offline") else None,
    )
    data: dict[str, Any] = {f"sweep/{png.stem}": wandb.Image(str(png)) for png in sorted(sweep_dir.glob("*.png"))}
    if (sweep_dir / COMPARISON_CSV).is_file():
        with open(sweep_dir / COMPARISON_CSV, newline="") as f:
            rows = list(csv.reader(f))
        if rows:
            data["sweep/table"] = wandb.Table(columns=rows[0], data=rows[1:])
    run.log(data)
    run.finish()
    return run


class SweepSummary(Callback):
    """Hydra callback: at the end of a multirun, the sweep summary in the sweep directory (see module doc) and, with
    the W&B logger, the same figures and table in a W&B run of the jobs' group."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            sweep_dir = Path(str(config.hydra.sweep.dir))
            summarize_sweep(sweep_dir, swept_keys(sweep_overrides(config)))
            wandb_cfg = OmegaConf.select(config, "logger.wandb", default=None)
            if wandb_cfg is not None and os.environ.get("WANDB_MODE") != "disabled":
                log_sweep_to_wandb(sweep_dir, wandb_cfg)
        except Exception as err:  # a summary must never turn a finished sweep into a failure
            log.warning("could not write the sweep summary: %s", err)
