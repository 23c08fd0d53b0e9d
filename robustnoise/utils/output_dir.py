"""The run directory, checked before Hydra creates it: a bad path is one ``error:`` line with exit code 2."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def check_output_dir(path: str | Path, key: str) -> None:
    """Exit with one ``error:`` line (not Hydra's traceback) unless ``path`` is, or can become, a writable directory."""
    path = Path(path).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists() or p.is_symlink())
    if not existing.is_dir():
        problem = "is a file" if existing == path else f"cannot be a directory: {existing} is a file"
    else:
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".write-test-", dir=existing))
            return
        except OSError as err:
            problem = f"is not writable: {existing} refuses new entries ({err.strerror})"
    print(f"error: {key}={path} {problem}", file=sys.stderr)
    sys.exit(2)


class OutputDirCheck(Callback):
    """Hydra callback (``hydra.callbacks``): check ``hydra.run.dir`` / ``hydra.sweep.dir`` before they are created."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_output_dir(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_output_dir(config.hydra.sweep.dir, "hydra.sweep.dir")
