"""``python -m benchmarks``: run every benchmark and print its table (ratios against same-run baselines)."""

from __future__ import annotations

import importlib
import logging
import warnings

BENCHMARKS = ["ant_iteration", "ada_iteration", "eval_throughput", "corruptions"]


def main() -> None:
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    for name in BENCHMARKS:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"\n## {name}\n{(module.__doc__ or '').strip().splitlines()[0]}\n")
        print(module.run())


if __name__ == "__main__":
    main()
