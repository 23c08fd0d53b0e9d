"""``python -m robustnoise.compare``: the cross-run table of :mod:`robustnoise.report.compare`."""

from robustnoise.report.compare import main

if __name__ == "__main__":
    raise SystemExit(main())
