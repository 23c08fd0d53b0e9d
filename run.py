"""Command line: ``python run.py [task=NAME | --config-name NAME] [group=option ...] [key=value ...]`` (Hydra).

Each task has its own primary config, ``conf/<task>.yaml`` (train, the default, eval, make_c, stylize, pretrain_edsr);
``task=NAME`` chooses it before Hydra starts, as ``--config-name NAME`` does.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

import robustnoise.utils.resolvers  # noqa: F401  (registers the rn.* resolvers the configs use)
from robustnoise.utils.errors import RobustnoiseError

CONF = Path(__file__).resolve().parent / "conf"
INTERNAL_GROUPS = {"hydra", "local", "debug_inner", "recipe"}  # composed by other configs, not chosen by users


def public_groups(chosen: DictConfig) -> str:
    """``group: option, ...`` per group of this task's config (``hydra.runtime.choices``), without internal groups
    and ``_``-prefixed base configs."""
    lines = []
    for group in sorted({g.split("@")[0] for g in chosen} - INTERNAL_GROUPS):
        options = sorted(f.stem for f in (CONF / group).glob("*.yaml") if not f.name.startswith("_"))
        if options:
            lines.append(f"  {group}: {', '.join(options)}")
    return "\n".join(lines)


OmegaConf.register_new_resolver("rn.help_groups", public_groups, replace=True)

TASKS = ("train", "eval", "make_c", "stylize", "pretrain_edsr")
SCHEMAS = {  # the typed options of the file-writing tasks (Hydra structured configs)
    "make_c": "robustnoise.corruptions.make_c:MakeCOptions",
    "stylize": "robustnoise.stylize.make_stylized:StylizeOptions",
    "pretrain_edsr": "robustnoise.pretrain_edsr:PretrainEDSROptions",
}


def task_config(args: list[str]) -> str:
    """The primary config that ``args`` ask for: ``--config-name``/``-cn`` NAME, else ``task=NAME``, else train."""
    name = "train"
    for i, arg in enumerate(args):
        if arg in ("--config-name", "-cn") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(("--config-name=", "-cn=")):
            return arg.split("=", 1)[1]
        if arg.startswith("task="):
            name = arg.split("=", 1)[1]
    if name not in TASKS:
        raise RobustnoiseError(f"unknown task {name!r}: use task={', task='.join(TASKS)}")
    return name


def store_schema(config_name: str) -> None:
    """Put the options dataclass of ``config_name`` (if it has one) in Hydra's ConfigStore as ``<name>_schema``."""
    if config_name in SCHEMAS:
        module, cls = SCHEMAS[config_name].split(":")
        ConfigStore.instance().store(name=f"{config_name}_schema", node=getattr(importlib.import_module(module), cls))


def main() -> None:
    try:
        name = task_config(sys.argv[1:])
    except RobustnoiseError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    store_schema(name)
    hydra.main(version_base="1.3", config_path="conf", config_name=name)(execute)()


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
