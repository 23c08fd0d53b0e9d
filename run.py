"""Command line: ``python run.py [task=train|eval] [group=option ...] [key=value ...]`` (Hydra)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

import robustnoise.utils.resolvers  # noqa: F401  (registers the rn.* resolvers the configs use)
from robustnoise.utils.errors import RobustnoiseError

CONF = Path(__file__).resolve().parent / "conf"
INTERNAL_GROUPS = {
    "hydra",
    "local",
    "debug_inner",
    "recipe",
}  # composed by other configs, not chosen on the command line


def public_groups() -> str:
    """``group: option, ...`` per selectable config group, without internal groups and ``_``-prefixed base configs."""
    lines = []
    for group in sorted(p for p in CONF.iterdir() if p.is_dir() and p.name not in INTERNAL_GROUPS):
        options = sorted(f.stem for f in group.glob("*.yaml") if not f.name.startswith("_"))
        lines.append(f"  {group.name}: {', '.join(options)}")
    return "\n".join(lines)


OmegaConf.register_new_resolver("rn.help_groups", public_groups, replace=True)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return execute(cfg)


def execute(cfg: DictConfig) -> float | None:
    """Run the task; a user error becomes one ``error: ...`` line on stderr and exit code 2."""
    from robustnoise.train import run

    try:
        summary = run(cfg)
    except RobustnoiseError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log_to_files_only(f"error: {err}")
        with contextlib.suppress(OSError):  # another rank may be removing it too; the error line matters more
            remove_empty_run_dir(cfg)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    return (summary.get("metrics") or {}).get("c_top1", summary.get("corrupted_top1")) if summary else None


def log_to_files_only(message: str) -> None:
    """Record ``message`` in the run's log file without echoing it on the console (stderr gets it once)."""
    record = logging.LogRecord("robustnoise", logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def remove_empty_run_dir(cfg: DictConfig) -> None:
    """A run stopped by bad input leaves no directory behind when it holds only its log file and Hydra's config.

    Only ``*.log`` at the top and ``.hydra/`` are removed, then the directory if it is empty: a directory with
    anything else in it (checkpoints, results, an earlier run's files) is left as it is.
    """
    out = Path(str(OmegaConf.select(cfg, "paths.output_dir", default="") or ""))
    if not out.name or not out.is_dir():
        return
    entries = list(out.iterdir())
    if any(not ((e.is_file() and e.suffix == ".log") or (e.is_dir() and e.name == ".hydra")) for e in entries):
        return
    hydra_dir = out / ".hydra"
    if hydra_dir.is_dir() and any(not f.is_file() for f in hydra_dir.iterdir()):
        return
    for entry in entries:
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    out.rmdir()


if __name__ == "__main__":
    main()
