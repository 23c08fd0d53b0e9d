"""``python -m robustnoise.compare RUN_DIR [RUN_DIR ...]``: one robustness table over several evaluated runs."""

from __future__ import annotations

import sys

from robustnoise.reporting import compare_runs


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m robustnoise.compare RUN_DIR [RUN_DIR ...]", file=sys.stderr)
        return 2
    try:
        print(compare_runs(args))
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
