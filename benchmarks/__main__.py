"""``python -m benchmarks``: run the benchmarks and print their tables (ratios against same-run baselines).

The common options (``--device``, ``--precision``, ``--threads``, ``--repeats``) go to the training and evaluation
benchmarks; ``corruptions`` runs with its own defaults (see their ``--help``).
"""

from __future__ import annotations

import importlib

from benchmarks.common import parser, quiet_lightning

COMMON = ["ant_iteration", "ada_iteration", "eval_throughput", "val_c_cost"]  # take the common options
OWN = ["corruptions"]


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--only", nargs="+", choices=COMMON + OWN, default=COMMON + OWN, help="benchmarks to run")
    args = p.parse_args(argv)
    for name in args.only:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"\n## {name}\n{(module.__doc__ or '').strip().splitlines()[0]}\n", flush=True)
        with quiet_lightning():
            print(module.run(args) if name in COMMON else module.run(), flush=True)


if __name__ == "__main__":
    main()
