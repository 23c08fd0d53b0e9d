"""``python -m robustnoise.compare RUN_DIR [RUN_DIR ...] [--sweep-key KEY] [--baseline RUN_DIR] [--out DIR]``.

Compares evaluated runs (directories holding ``robustness.json``; a Hydra multirun directory stands for its jobs):
prints the tables and writes ``comparison.md`` and ``comparison.csv`` to ``--out`` (default: the runs' common parent).
``--sweep-key method.sigma`` orders the runs by that key of their ``.hydra/config.yaml``, shows it first and draws
``sweep.png`` (Rusak et al. 2020 Fig. 2); ``--baseline`` adds that run to every table and draws ``comparison.png``.

Seeds are the unit: runs whose configs differ only in ``seed`` form a group, shown per number as the mean over its
seeds with its interval (:func:`robustnoise.report.reporting.seed_interval`) and ``>k`` where it lies entirely above
group k's. Runs that measured ``clip(x + sigma n)`` also get ``sigma_sweep.png``, one band per group.

Exit codes: 0 done, 1 a run directory without ``robustness.json`` (one-line error), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from robustnoise.report.reporting import (
    Interval,
    fmt,
    format_table,
    markdown_table,
    seed_interval,
    separated,
    summary_notes,
    summary_table,
)
from robustnoise.report.schema import REPORT_JSON, Report, all_corruptions, attack_names, eps_directions, num

COMPARISON_MD = "comparison.md"
COMPARISON_CSV = "comparison.csv"
SWEEP_PNG = "sweep.png"
SIGMA_SWEEP_PNG = "sigma_sweep.png"
GROUPS_PNG = "comparison.png"
HYDRA_CONFIG = Path(".hydra") / "config.yaml"
HYDRA_OVERRIDES = Path(".hydra") / "overrides.yaml"
SEED_KEYS = ("seed",)
"""Config keys that only re-draw randomness: runs that differ in nothing else are one group."""
SUMMARY_KEYS: tuple[str, ...] = (
    *(f"{k}_top{n}" for k in ("clean", "c", "no_noise") for n in (1, 5)),
    *("mce", "relative_mce", "unnormalized_mce", "holdout_top1", "holdout_top5"),
)


def expand_run_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Run directories of ``paths``: a directory with ``robustness.json`` is a run; a directory without one (a
    Hydra multirun directory) stands for its subdirectories that have one, in job order. Raises
    :class:`FileNotFoundError` for a path that is neither."""
    runs: list[Path] = []
    for path in map(Path, paths):
        if (path / REPORT_JSON).is_file():
            runs.append(path)
            continue
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no such run directory")
        jobs = sorted((d for d in path.iterdir() if (d / REPORT_JSON).is_file()), key=_job_order)
        if not jobs:
            Report.load(path)  # raises the standard "no robustness.json in ..." error
        unevaluated = [d.name for d in path.iterdir() if (d / HYDRA_CONFIG).is_file() and d not in jobs]
        if unevaluated:
            skipped = ", ".join(sorted(unevaluated))
            print(f"note: {path}: skipping jobs without {REPORT_JSON}: {skipped}", file=sys.stderr)
        runs.extend(jobs)
    return runs


def _job_order(path: Path) -> tuple[int, str]:
    """Hydra job directories ``<num>_<overrides>`` sort by job number, others after them by name."""
    match = re.match(r"^(\d+)(?:_|$)", path.name)
    return (int(match[1]) if match else sys.maxsize, path.name)


def config_value(run_dir: str | Path, key: str) -> Any:
    """The value of the dotted ``key`` in ``<run_dir>/.hydra/config.yaml`` (lists as lists), None if absent."""
    path = Path(run_dir) / HYDRA_CONFIG
    if not path.is_file():
        return None
    from omegaconf import OmegaConf

    import robustnoise.utils.resolvers  # noqa: F401  (the rn.* resolvers some values interpolate)

    try:
        cfg = OmegaConf.load(path)
        value = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
    except Exception as err:  # unreadable YAML, interpolation to a missing resolver, ...
        print(f"warning: cannot read {key} from {path}: {err}", file=sys.stderr)
        return None
    return value


def _sort_key(value: Any) -> tuple[int, float, str]:
    if value is None:
        return (2, 0.0, "")
    number = num(value)
    return (0, number, "") if not math.isnan(number) else (1, 0.0, str(value))


def _show(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_show(v) for v in value) + "]"
    return str(value)


def run_names(reports: Sequence[Report], run_dirs: Sequence[Path], sweep: list[str] | None) -> list[str]:
    """Row labels: the run names, made unique with the swept value, else with the directory name."""
    names = [r.label for r in reports]
    if len(set(names)) < len(names) and sweep is not None:
        names = [f"{n} {s}" for n, s in zip(names, sweep)]
    if len(set(names)) < len(names):
        names = [f"{n} [{d.name}]" for n, d in zip(names, run_dirs)]
    return names


def _yaml(path: Path) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path), resolve=False) if path.is_file() else None


def _is_seed_override(override: str) -> bool:
    key = override.split("=", 1)[0].lstrip("+~")
    return key in SEED_KEYS or key.startswith("hydra.")


def group_runs(run_dirs: Sequence[Path], reports: Sequence[Report]) -> list[tuple[str, list[int]]]:
    """Runs that differ only in their seed, as ``(label, run indices)`` in order of first appearance.

    Two runs are in one group when their ``.hydra/config.yaml`` is equal apart from ``seed`` (runs without one: when
    their report's method, run name, model, data and preset are equal). The label is the run label (the method) when
    that differs between the groups, else the command-line overrides in which they differ (``method.sigma=0.5``)."""
    keys: list[str] = []
    for run_dir, report in zip(run_dirs, reports):
        config = _yaml(Path(run_dir) / HYDRA_CONFIG)
        if isinstance(config, dict):
            config = {k: v for k, v in config.items() if k not in SEED_KEYS}
        else:
            config = {k: getattr(report, k) for k in ("method", "run_name", "model", "data", "preset", "benchmark")}
        keys.append(json.dumps(config, sort_keys=True, default=str))
    members: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    groups = list(members.values())
    overrides = []
    for indices in groups:
        found = _yaml(Path(run_dirs[indices[0]]) / HYDRA_OVERRIDES)
        overrides.append([str(o) for o in found or [] if not _is_seed_override(str(o))])
    common = set.intersection(*(set(o) for o in overrides)) if overrides else set()
    labels = [reports[g[0]].label for g in groups]  # the method (run name) when that tells the groups apart
    if len(set(labels)) < len(labels):
        labels = [" ".join(o for o in own if o not in common) or lab for own, lab in zip(overrides, labels)]
    if len(set(labels)) < len(labels):
        labels = [f"{label} [{run_dirs[g[0]].name}]" for label, g in zip(labels, groups)]
    return list(zip(labels, groups))


def grouped_rows(reports: Sequence[Report]) -> list[tuple[str, int, Any]]:
    """The numbers the grouped table shows: ``(row label, decimals, number of a report)``, rows that some report
    has, in the order clean, mean corruption, sigma sweep, adversarial noise, eps*, attacks, corruptions."""
    rows: list[tuple[str, int, Any]] = [("clean top-1", 1, lambda r: r.metric("clean_top1"))]
    rows.append(("mean corruption top-1", 1, lambda r: r.metric("c_top1")))
    for sigma in sorted({s for r in reports for s in r.gaussian_sigmas}):
        rows.append((f"gaussian sigma {sigma:g}", 1, lambda r, s=sigma: r.gaussian_sigmas.get(s, math.nan)))
    rows.append(("adv. noise top-1, mean", 1, lambda r: r.adversarial()[0]))
    rows.append(("adv. noise top-1, worst", 1, Report.adversarial_worst))
    for direction in eps_directions(reports):
        rows.append((f"eps* {direction}", 2, lambda r, d=direction: r.eps_value(d)[0]))
    rows.append(("eps* adversarial, worst", 2, Report.eps_worst))
    for name in attack_names(reports):
        rows.append((f"{name} top-1", 1, lambda r, n=name: r.attack(n)[0]))
    main, holdouts = all_corruptions(reports)
    for name in main + holdouts:
        rows.append((name, 1, lambda r, c=name: r.corruption_accuracy(c)))
    return [row for row in rows if any(not math.isnan(num(row[2](r))) for r in reports)]


def _cell(interval: Interval, digits: int, above: list[int]) -> str:
    if interval.n == 0:
        return "–"
    text = f"{interval.mean:.{digits}f}"
    if interval.n > 1:
        text += f" [{interval.lo:.{digits}f}, {interval.hi:.{digits}f}]"
    return text + (" >" + ",".join(map(str, above)) if above else "")


def grouped_table(reports: Sequence[Report], groups: Sequence[tuple[str, list[int]]]) -> str:
    """One row per number, one column per group: the mean over the group's seeds, its interval, and ``>k`` for each
    group k whose interval lies entirely below (markdown)."""
    header = ["", *(f"({k}) {label}, n={len(idx)}" for k, (label, idx) in enumerate(groups, 1))]
    rows = []
    for name, digits, value in grouped_rows(reports):
        intervals = [seed_interval([value(reports[i]) for i in idx]) for _, idx in groups]
        rows.append(
            [name]
            + [_cell(a, digits, [k for k, b in enumerate(intervals, 1) if separated(a, b) > 0]) for a in intervals]
        )
    return markdown_table(header, rows)


def grouped_notes(groups: Sequence[tuple[str, list[int]]]) -> list[str]:
    sizes = sorted({len(idx) for _, idx in groups})
    return [
        "Each column is a group of runs that differ only in their seed. Cells: mean over the seeds [interval]; the "
        "interval is min–max for n < 5 seeds and the 95 % t confidence interval of the mean for n >= 5.",
        "`>k`: the group's interval lies entirely above group k's (a difference the seeds support); groups with one "
        f"seed are never marked. Seeds per group: {', '.join(map(str, sizes))}.",
        "Accuracies top-1 % on the test split; eps*: median l2 norm; adv. noise worst: the strongest generator.",
    ]


def corruption_comparison(reports: Sequence[Report], names: Sequence[str]) -> str:
    """Top-1 per corruption (mean over severities), one row per run (markdown)."""
    main, holdouts = all_corruptions(reports)
    header = ["run", *main, *(f"{h} (holdout)" for h in holdouts)]
    rows = [[name] + [fmt(r.corruption_accuracy(c)) for c in main + holdouts] for name, r in zip(names, reports)]
    return markdown_table(header, rows)


def _csv_number(value: Any) -> str:
    value = num(value)
    return "nan" if math.isnan(value) else f"{value:.4f}"


def write_csv(
    path: Path,
    reports: Sequence[Report],
    names: Sequence[str],
    run_dirs: Sequence[Path],
    sweep: tuple[str, Sequence[Any]] | None = None,
) -> None:
    """``comparison.csv``: one row per run; numbers in %, ``nan`` when missing."""
    main, holdouts = all_corruptions(reports)
    directions = eps_directions(reports)
    stats = {d: sorted({k for r in reports for k in r.eps_star.get(d, {})}) for d in directions}
    header = ([sweep[0]] if sweep else []) + ["run", "run_dir", "method", "model", "data", *SUMMARY_KEYS]
    header += [f"eps_star/{d}/{s}" for d in directions for s in stats[d]]
    sigmas = sorted({s for r in reports for s in r.gaussian_sigmas})
    header += [f"gaussian_sigma/{s:g}/top1" for s in sigmas]
    header += ["adv_noise_mean", "adv_noise_std", "adv_noise_epsilon", "adv_noise_worst"]
    attacks = attack_names(reports)
    header += [f"attack/{a}/{k}" for a in attacks for k in ("accuracy", "epsilon")]
    header += [f"{c}/top1" for c in main + holdouts]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i, (name, report, run_dir) in enumerate(zip(names, reports, run_dirs)):
            row = ([_show(sweep[1][i]) if sweep[1][i] is not None else ""] if sweep else []) + [name, str(run_dir)]
            row += [str(getattr(report, k) or "") for k in ("method", "model", "data")]
            row += [_csv_number(report.metric(k)) for k in SUMMARY_KEYS]
            row += [_csv_number(report.eps_star.get(d, {}).get(s)) for d in directions for s in stats[d]]
            row += [_csv_number(report.gaussian_sigmas.get(s)) for s in sigmas]
            row += [_csv_number(v) for v in (*report.adversarial(), report.adversarial_worst())]
            row += [_csv_number(v) for a in attacks for v in report.attack(a)]
            row += [_csv_number(report.corruption_accuracy(c)) for c in main + holdouts]
            writer.writerow(row)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m robustnoise.compare",
        description="Compare the robustness reports of evaluated runs (tables, CSV, sweep and baseline figures).",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories or Hydra multirun directories")
    parser.add_argument("--sweep-key", help="dotted config key to sort and plot the runs by, e.g. method.sigma")
    parser.add_argument(
        "--baseline", metavar="RUN_DIR", help="add this run to the tables and draw one chart of every group with it"
    )
    parser.add_argument("--out", metavar="DIR", help="where to write the outputs (default: the runs' common parent)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run_dirs = expand_run_dirs(args.runs)
        reports = [Report.load(d) for d in run_dirs]
        baseline = Report.load(args.baseline) if args.baseline else None
    except (FileNotFoundError, ValueError) as err:  # ValueError: a robustness.json that is not JSON
        print(f"error: {err}", file=sys.stderr)
        return 1
    if baseline is not None and Path(args.baseline).resolve() not in {d.resolve() for d in run_dirs}:
        run_dirs, reports = [Path(args.baseline), *run_dirs], [baseline, *reports]  # a row of every table

    sweep_values: list[Any] | None = None
    if args.sweep_key:
        sweep_values = [config_value(d, args.sweep_key) for d in run_dirs]
        order = sorted(range(len(run_dirs)), key=lambda i: _sort_key(sweep_values[i]))
        run_dirs, reports = [run_dirs[i] for i in order], [reports[i] for i in order]
        sweep_values = [sweep_values[i] for i in order]
        missing = [str(d) for d, v in zip(run_dirs, sweep_values) if v is None]
        if missing:
            print(f"warning: no {args.sweep_key} in the config of {', '.join(missing)}", file=sys.stderr)
    short_key = args.sweep_key.rsplit(".", 1)[-1] if args.sweep_key else ""
    shown = [f"{short_key}={_show(v)}" for v in sweep_values] if sweep_values is not None else None
    names = run_names(reports, run_dirs, shown)

    out = Path(args.out) if args.out else Path(os.path.commonpath([d.resolve().parent for d in run_dirs]))
    out.mkdir(parents=True, exist_ok=True)
    first = (args.sweep_key, [_show(v) for v in sweep_values]) if sweep_values is not None else None
    groups = group_runs(run_dirs, reports)
    if baseline is not None:
        base_dir = Path(args.baseline).resolve()
        groups = [
            (f"{g} (baseline)" if any(run_dirs[i].resolve() == base_dir for i in idx) else g, idx) for g, idx in groups
        ]
    grouped = grouped_table(reports, groups)
    summary = summary_table(reports, names, first)
    per_corruption = corruption_comparison(reports, names)
    if all(len(idx) == 1 for _, idx in groups):  # no seeds to group: the per-run tables are the comparison
        print(f"{summary}\n\ntop-1 per corruption (mean over severities):\n{per_corruption}\n")
        print(f"top-1 per corruption and severity:\n{format_table(reports, names)}")
    else:
        print(grouped)
        print("\n".join(grouped_notes(groups)))
        print(f"(per-run tables: {out / COMPARISON_MD})")

    figures = _figures(args.sweep_key, out, reports, sweep_values, baseline, groups)
    write_csv(out / COMPARISON_CSV, reports, names, run_dirs, (args.sweep_key, sweep_values) if first else None)
    lines = ["# Robustness comparison", ""]
    lines += [f"- {name}: `{d}`" for name, d in zip(names, run_dirs)]
    if baseline is not None:
        lines.append(f"- baseline: {baseline.label} (`{args.baseline}`)")
    lines += ["", "## Seed groups", "", grouped, ""] + [f"- {n}" for n in grouped_notes(groups)]
    lines += ["", "## Summary per run", "", summary, ""] + [f"- {n}" for n in summary_notes(reports)]
    lines += ["", "## Top-1 per corruption (mean over severities)", "", per_corruption, ""]
    if figures:
        lines += ["## Figures", ""] + [f"![{caption}]({name})" for caption, name in figures] + [""]
    (out / COMPARISON_MD).write_text("\n".join(lines))
    print()
    print(f"written: {out / COMPARISON_MD}, {out / COMPARISON_CSV}" + "".join(f", {out / f}" for _, f in figures))
    return 0


def _figures(
    sweep_key: str | None,
    out: Path,
    reports: list[Report],
    sweep_values: list[Any] | None,
    baseline: Report | None,
    groups: Sequence[tuple[str, list[int]]] = (),
) -> list[tuple[str, str]]:
    """Draw the sweep, sigma-sweep and baseline figures; a figure that fails is reported on stderr and skipped."""
    from robustnoise.report import plots

    curves = [(label, [reports[i] for i in idx]) for label, idx in groups]
    jobs: list[tuple[str, str, Any]] = []
    if any(r.gaussian_sigmas for r in reports):
        jobs.append(
            ("accuracy vs sigma, band over seeds", SIGMA_SWEEP_PNG, lambda p: plots.plot_sigma_bands(curves, p))
        )
    kept = [i for i, v in enumerate(sweep_values or []) if v is not None]
    if sweep_key and kept:
        runs, xs, xlabel = [reports[i] for i in kept], [sweep_values[i] for i in kept], sweep_key.rsplit(".", 1)[-1]
        jobs.append((f"accuracy vs {sweep_key}", SWEEP_PNG, lambda p: plots.plot_sweep(runs, xs, p, xlabel=xlabel)))
    if baseline is not None:
        caption = "clean, corruption, adversarial noise and eps* per group, with the baseline"
        jobs.append((caption, GROUPS_PNG, lambda p: plots.plot_groups(curves, p)))
    return plots.draw(jobs, out, lambda message: print(f"warning: {message}", file=sys.stderr))


if __name__ == "__main__":
    sys.exit(main())
