"""The run directory, checked before Hydra creates it: a bad path is one ``error:`` line with exit code 2."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from robustnoise.utils.errors import ConfigError


def check_output_dir(path: str | Path, key: str) -> None:
    """A one-line :class:`ConfigError` unless ``path`` is, or can become, a writable directory."""
    path = Path(path).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists() or p.is_symlink())
    if not existing.is_dir():
        what = "is a file" if existing == path else f"cannot be a directory: {existing} is a file"
        raise ConfigError(f"{key}={path} {what}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write-test-", dir=existing))
    except OSError as err:
        raise ConfigError(f"{key}={path} is not writable: {existing} refuses new entries ({err.strerror})") from None


class OutputDirCheck(Callback):
    """Hydra callback (``hydra.callbacks``): check ``hydra.run.dir`` / ``hydra.sweep.dir`` before they are created."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")

    @staticmethod
    def _check(path: str, key: str) -> None:
        try:
            check_output_dir(path, key)
        except ConfigError as err:  # Hydra's own error report would add a traceback and exit code 1
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
