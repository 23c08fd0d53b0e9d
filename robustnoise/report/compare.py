"""``python -m robustnoise.report.compare RUN_DIR... [--sweep-key KEY] [--baseline RUN_DIR] [--out DIR]``: tables,
CSV and figures over evaluated runs (a multirun directory stands for its jobs); runs differing only in ``seed`` are one
group with an interval. Exit codes: 0 done, 1 a run without ``robustness.json``, 2 bad arguments."""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from robustnoise.metrics import num
from robustnoise.report import reporting as rp
from robustnoise.report.reporting import REPORT_JSON, Report, all_corruptions, attack_names, eps_directions

COMPARISON_MD = "comparison.md"
COMPARISON_CSV = "comparison.csv"
SIGMA_SWEEP_PNG = "sigma_sweep.png"
SEED_KEYS = ("seed",)  # config keys that only re-draw randomness: runs that differ in nothing else are one group
SUMMARY_KEYS: tuple[str, ...] = (
    *(f"{k}_top{n}" for k in ("clean", "c", "no_noise") for n in (1, 5)),
    *("mce", "relative_mce", "unnormalized_mce", "holdout_top1", "holdout_top5"),
)


def expand_run_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """The runs of ``paths`` (a directory without ``robustness.json`` stands for its jobs that have one)."""
    runs: list[Path] = []
    for path in map(Path, paths):
        if (path / REPORT_JSON).is_file():
            runs.append(path)
            continue
        jobs = sorted((d for d in path.iterdir() if (d / REPORT_JSON).is_file()), key=_job_order)
        if not jobs:
            Report.load(path)  # raises the standard "no robustness.json in ..." error
        skipped = sorted(d.name for d in path.iterdir() if (d / ".hydra/config.yaml").is_file() and d not in jobs)
        if skipped:
            print(f"note: {path}: skipping jobs without {REPORT_JSON}: {', '.join(skipped)}", file=sys.stderr)
        runs.extend(jobs)
    return runs


def _job_order(path: Path) -> tuple[int, str]:
    """Hydra job directories ``<num>_<overrides>`` sort by job number, others after them by name."""
    match = re.match(r"^(\d+)(?:_|$)", path.name)
    return (int(match[1]) if match else sys.maxsize, path.name)


def _hydra(run_dir: str | Path, name: str = "config") -> Any:
    path = Path(run_dir) / ".hydra" / f"{name}.yaml"
    return OmegaConf.load(path) if path.is_file() else None


def config_value(run_dir: str | Path, key: str) -> Any:
    """The value of the dotted ``key`` in ``<run_dir>/.hydra/config.yaml`` (lists as lists), None if absent."""
    import robustnoise.utils.resolvers  # noqa: F401  (the rn.* resolvers some values interpolate)

    try:
        cfg = _hydra(run_dir)
        value = None if cfg is None else OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
        return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    except Exception as err:  # unreadable YAML, interpolation to a missing resolver, ...
        print(f"warning: cannot read {key} from {run_dir}: {err}", file=sys.stderr)
        return None


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_show(v) for v in value) + "]"
    return "–" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def group_runs(run_dirs: Sequence[Path], reports: Sequence[Report]) -> list[tuple[str, list[int]]]:
    """Runs that differ only in their seed as ``(label, run indices)``, labels telling the groups apart."""
    members: dict[str, list[int]] = {}
    for i, (run_dir, report) in enumerate(zip(run_dirs, reports)):
        config = _hydra(run_dir)
        if config is not None:
            config = {k: v for k, v in OmegaConf.to_container(config).items() if k not in SEED_KEYS}
        else:
            config = {k: getattr(report, k) for k in ("method", "run_name", "model", "data", "preset", "benchmark")}
        members.setdefault(json.dumps(config, sort_keys=True, default=str), []).append(i)
    groups = list(members.values())
    overrides = []
    for indices in groups:
        found = {str(o): str(o).split("=", 1)[0].lstrip("+~") for o in _hydra(run_dirs[indices[0]], "overrides") or []}
        overrides.append([o for o, k in found.items() if k not in SEED_KEYS and not k.startswith("hydra.")])
    common = set.intersection(*(set(o) for o in overrides)) if overrides else set()
    labels = [reports[g[0]].label for g in groups]
    if len(set(labels)) < len(labels):
        labels = [" ".join(o for o in own if o not in common) or lab for own, lab in zip(overrides, labels)]
    if len(set(labels)) < len(labels):
        labels = [f"{label} [{run_dirs[g[0]].name}]" for label, g in zip(labels, groups)]
    return list(zip(labels, groups))


def grouped_table(reports: Sequence[Report], groups: Sequence[tuple[str, list[int]]]) -> str:
    """A row per number, a column per group: mean over seeds, interval, ``>k`` where group k's lies entirely below."""
    header = ["", *(f"({k}) {label}, n={len(idx)}" for k, (label, idx) in enumerate(groups, 1))]
    rows = []
    for name, digits, value in rp.number_rows(reports):
        intervals = [rp.seed_interval([value(reports[i]) for i in idx]) for _, idx in groups]
        cells = [name]
        for a in intervals:
            above = ",".join(str(k) for k, b in enumerate(intervals, 1) if rp.separated(a, b) > 0)
            spread = f" [{a.lo:.{digits}f}, {a.hi:.{digits}f}]" if a.n > 1 else ""
            cells.append(f"{a.mean:.{digits}f}{spread}" + (f" >{above}" if above else "") if a.n else "–")
        rows.append(cells)
    return rp.markdown_table(header, rows)


def grouped_notes(groups: Sequence[tuple[str, list[int]]]) -> list[str]:
    sizes = sorted({len(idx) for _, idx in groups})
    return [
        "Each column is a group of runs that differ only in their seed. Cells: mean over the seeds [interval]; the "
        "interval is min–max for n < 5 seeds and the 95 % t confidence interval of the mean for n >= 5.",
        "`>k`: the group's interval lies entirely above group k's (a difference the seeds support); groups with one "
        f"seed are never marked. Seeds per group: {', '.join(map(str, sizes))}.",
        "Accuracies top-1 % on the test split; eps*: median l2 norm; adv. noise worst: the strongest generator.",
    ]


def write_csv(
    path: Path, reports: Sequence[Report], names: list[str], run_dirs: list[Path], sweep: tuple | None
) -> None:
    """``comparison.csv``: a row per run (``sweep``: the swept key and values first); ``nan`` when missing."""
    main, holdouts = all_corruptions(reports)
    eps = [(d, s) for d in eps_directions(reports) for s in sorted({k for r in reports for k in r.eps_star.get(d, {})})]
    sigmas = sorted({s for r in reports for s in r.gaussian_sigmas})
    attacks = attack_names(reports)
    header = ([sweep[0]] if sweep else []) + ["run", "run_dir", "method", "model", "data", *SUMMARY_KEYS]
    header += [f"eps_star/{d}/{s}" for d, s in eps] + [f"gaussian_sigma/{s:g}/top1" for s in sigmas]
    header += ["adv_noise_mean", "adv_noise_std", "adv_noise_epsilon", "adv_noise_worst"]
    header += [f"attack/{a}/{k}" for a in attacks for k in ("accuracy", "epsilon")]
    header += [f"{c}/top1" for c in main + holdouts]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i, (name, r, run_dir) in enumerate(zip(names, reports, run_dirs)):
            numbers = [r.metric(k) for k in SUMMARY_KEYS] + [r.eps_star.get(d, {}).get(s) for d, s in eps]
            numbers += [r.gaussian_sigmas.get(s) for s in sigmas] + [*r.adversarial(), r.adversarial_worst()]
            numbers += [v for a in attacks for v in r.attack(a)] + [r.corruption_accuracy(c) for c in main + holdouts]
            row = ([_show(sweep[1][i]) if sweep[1][i] is not None else ""] if sweep else []) + [name, str(run_dir)]
            row += [str(getattr(r, k) or "") for k in ("method", "model", "data")]
            writer.writerow(row + ["nan" if math.isnan(num(v)) else f"{num(v):.4f}" for v in numbers])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser("python -m robustnoise.report.compare", description="Compare evaluated runs.")
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories or Hydra multirun directories")
    parser.add_argument("--sweep-key", help="dotted config key to sort and plot the runs by, e.g. method.sigma")
    parser.add_argument("--baseline", metavar="RUN_DIR", help="add this run to the tables and one chart of all groups")
    parser.add_argument("--out", metavar="DIR", help="where to write the outputs (default: the runs' common parent)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    base_dir = Path(args.baseline).resolve() if args.baseline else None
    try:
        run_dirs = expand_run_dirs(args.runs)
        if base_dir and base_dir not in {d.resolve() for d in run_dirs}:
            run_dirs.insert(0, Path(args.baseline))  # a row of every table
        reports = [Report.load(d) for d in run_dirs]
    except (OSError, ValueError) as err:  # no such directory, no robustness.json, a robustness.json that is not JSON
        print(f"error: {err}", file=sys.stderr)
        return 1
    key, values, first = args.sweep_key, None, None
    if key:
        values = [config_value(d, key) for d in run_dirs]
        order = sorted(range(len(run_dirs)), key=lambda i: _sort_key(values[i]))
        run_dirs, reports, values = ([seq[i] for i in order] for seq in (run_dirs, reports, values))
        missing = [str(d) for d, v in zip(run_dirs, values) if v is None]
        if missing:
            print(f"warning: no {key} in the config of {', '.join(missing)}", file=sys.stderr)
        first = (key, [_show(v) for v in values])
    names = [r.label for r in reports]  # row labels: made unique with the swept value, else the directory name
    if len(set(names)) < len(names) and values is not None:
        names = [f"{n} {key.rsplit('.', 1)[-1]}={_show(v)}" for n, v in zip(names, values)]
    if len(set(names)) < len(names):
        names = [f"{n} [{d.name}]" for n, d in zip(names, run_dirs)]
    out = Path(args.out) if args.out else Path(os.path.commonpath([d.resolve().parent for d in run_dirs]))
    out.mkdir(parents=True, exist_ok=True)
    groups = group_runs(run_dirs, reports)
    base = [i for i, d in enumerate(run_dirs) if d.resolve() == base_dir]
    groups = [(f"{g} (baseline)" if set(base) & set(idx) else g, idx) for g, idx in groups]
    grouped, summary = grouped_table(reports, groups), rp.summary_table(reports, names, first)
    main, holdouts = all_corruptions(reports)
    header = ["run", *main, *(f"{h} (holdout)" for h in holdouts)]
    rows = [[name] + [rp.fmt(r.corruption_accuracy(c)) for c in main + holdouts] for name, r in zip(names, reports)]
    per_corruption = rp.markdown_table(header, rows)
    if all(len(idx) == 1 for _, idx in groups):  # no seeds to group: the per-run tables are the comparison
        print(f"{summary}\n\ntop-1 per corruption (mean over severities):\n{per_corruption}\n")
        print(f"top-1 per corruption and severity:\n{rp.format_table(reports, names)}")
    else:
        print("\n".join([grouped, *grouped_notes(groups), f"(per-run tables: {out / COMPARISON_MD})"]))
    from robustnoise.report import plots  # matplotlib: only when drawing (the sweep callback loads this module)

    curves = [(label, [reports[i] for i in idx]) for label, idx in groups]
    kept = [i for i, v in enumerate(values or []) if v is not None]  # runs without the swept key are not on its axis
    runs, xs, xlabel = [reports[i] for i in kept], [values[i] for i in kept], str(key).split(".")[-1]
    with_baseline = "clean, corruption, adversarial noise and eps* per group, with the baseline"
    jobs = [
        ("accuracy vs sigma, band over seeds", SIGMA_SWEEP_PNG, partial(plots.plot_sigma_bands, curves)),
        (f"accuracy vs {key}", "sweep.png", partial(plots.plot_sweep, runs, xs, xlabel=xlabel)),
        (with_baseline, "comparison.png", partial(plots.plot_groups, curves)),
    ]
    wanted = [any(r.gaussian_sigmas for r in reports), bool(kept), bool(base)]
    figures = plots.draw([j for j, w in zip(jobs, wanted) if w], out, lambda m: print(f"warning: {m}", file=sys.stderr))
    write_csv(out / COMPARISON_CSV, reports, names, run_dirs, (key, values) if key else None)
    lines = ["# Robustness comparison", "", *(f"- {name}: `{d}`" for name, d in zip(names, run_dirs))]
    if base:
        lines.append(f"- baseline: {reports[base[0]].label} (`{args.baseline}`)")
    lines += ["", "## Seed groups", "", grouped, ""] + [f"- {n}" for n in grouped_notes(groups)]
    lines += ["", "## Summary per run", "", summary, ""] + [f"- {n}" for n in rp.summary_notes(reports)]
    lines += ["", "## Top-1 per corruption (mean over severities)", "", per_corruption, ""]
    if figures:
        lines += ["## Figures", "", *(f"![{caption}]({name})" for caption, name in figures), ""]
    (out / COMPARISON_MD).write_text("\n".join(lines))
    print(f"\nwritten: {out / COMPARISON_MD}, {out / COMPARISON_CSV}" + "".join(f", {out / f}" for _, f in figures))
    return 0


def _sort_key(value: Any) -> tuple[int, float, str]:
    """Numbers first, then other values by name, then runs without the key."""
    number = num(value)
    return (2, 0.0, "") if value is None else (0, number, "") if not math.isnan(number) else (1, 0.0, str(value))


if __name__ == "__main__":
    sys.exit(main())
