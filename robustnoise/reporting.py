"""Robustness reports: CSV + JSON in the run directory, a printed table, and a comparison across run directories."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from robustnoise.evaluate import summarize

REPORT_JSON = "robustness.json"
REPORT_CSV = "robustness.csv"


def write_report(accuracies: dict[str, dict[str, float]], out_dir: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Write ``robustness.csv`` (a row per set) and ``robustness.json`` (summary + every set) to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / REPORT_CSV, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["corruption", "severity", "top1", "top5", "n"])
        for key, acc in accuracies.items():
            name, _, sev = key.partition("/s")
            writer.writerow([name, sev or 0, f"{acc['top1']:.4f}", f"{acc['top5']:.4f}", acc["n"]])
    report = {**meta, **summarize(accuracies), "sets": accuracies}
    (out / REPORT_JSON).write_text(json.dumps(report, indent=2, allow_nan=True))
    return report


def load_report(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / REPORT_JSON
    if not path.is_file():
        raise FileNotFoundError(f"no {REPORT_JSON} in {run_dir}: was the run evaluated (task=train or task=eval)?")
    return json.loads(path.read_text())


def _fmt(value: float) -> str:
    return "  -  " if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:5.1f}"


def format_table(reports: Sequence[dict[str, Any]], names: Sequence[str] | None = None) -> str:
    """One row per report: clean, mean corruption accuracy, then each corruption x severity (top-1, %)."""
    names = list(names or [r.get("method", f"run{i}") for i, r in enumerate(reports)])
    set_keys: list[str] = []
    for report in reports:
        set_keys += [k for k in report["sets"] if k != "clean" and k not in set_keys]
    short = {k: _short(k) for k in set_keys}
    width = max(8, *(len(n) for n in names))
    header = f"{'method':<{width}} clean  mean-C " + " ".join(f"{short[k]:>5}" for k in set_keys)
    lines = [header, "-" * len(header)]
    for name, report in zip(names, reports):
        cells = " ".join(_fmt(report["sets"].get(k, {}).get("top1", float("nan"))) for k in set_keys)
        lines.append(f"{name:<{width}} {_fmt(report['clean_top1'])}  {_fmt(report['corrupted_top1'])}  {cells}")
    if set_keys:
        lines.append("")
        lines.append("columns: " + ", ".join(sorted({f"{short[k][:-1]}=<{k.split('/')[0]}>" for k in set_keys})))
        lines.append("digit = severity; accuracies are top-1 % on the test split")
    return "\n".join(lines)


def _short(key: str) -> str:
    name, _, sev = key.partition("/s")
    abbrev = "".join(part[:2] for part in name.split("_"))[:4]
    return f"{abbrev}{sev}"


def compare_runs(run_dirs: Sequence[str | Path]) -> str:
    """The comparison table of several evaluated run directories."""
    reports = [load_report(d) for d in run_dirs]
    return format_table(reports)
