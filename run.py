"""Command line: ``python run.py [task=train|eval] [group=option ...] [key=value ...]`` (Hydra)."""

from __future__ import annotations

import logging
import os
import sys

import hydra
from omegaconf import DictConfig

import robustnoise.utils.resolvers  # noqa: F401  (registers the rn.* resolvers the configs use)
from robustnoise.utils.errors import RobustnoiseError


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
        logging.getLogger("robustnoise").error("%s", err)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    return (summary.get("metrics") or {}).get("c_top1", summary.get("corrupted_top1")) if summary else None


if __name__ == "__main__":
    main()
