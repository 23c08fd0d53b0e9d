"""Robustness reports: CSV + JSON + markdown (+ figures) in the run directory and printed tables.

``robustness.json`` is :meth:`robustnoise.report.schema.Report.to_dict`; ``robustness.md`` renders it like the papers'
tables: a summary row, the per-corruption table and the corruption x severity table. Numbers a report does not have
print as ``–``.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from robustnoise.metrics import Benchmark
from robustnoise.report.schema import REPORT_JSON, Report, attack_names, eps_directions, num

log = logging.getLogger(__name__)

REPORT_CSV = "robustness.csv"
REPORT_MD = "robustness.md"
SEVERITY_PNG = "severity_curves.png"
HEATMAP_PNG = "heatmap.png"
SIGMA_PNG = "sigma_curve.png"
MISSING = "–"
NAN = float("nan")


def write_report(
    report: Report, out_dir: str | Path, baseline: str | Path | Report | None = None, plots: bool = True
) -> Report:
    """Write the robustness report of one evaluation to ``out_dir`` and return it.

    Files: ``robustness.csv`` (a row per set), ``robustness.json``, ``robustness.md`` (the tables) and, with
    ``plots``, ``severity_curves.png`` and ``heatmap.png``; with a ``baseline`` (a run directory or a report), also
    ``bars_vs_<baseline>.png``. Figures are best effort: a failure to draw one is logged as a warning and never fails
    the run.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / REPORT_CSV, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["corruption", "severity", "top1", "top5", "n"])
        for key, acc in report.sets.items():
            name, _, sev = key.partition("/s")
            writer.writerow([name, sev or 0, f"{acc['top1']:.4f}", f"{acc['top5']:.4f}", acc["n"]])
        for sigma, top1 in report.gaussian_sigmas.items():  # the sigma sweep: severity column = sigma
            writer.writerow(["gaussian_sigma", f"{sigma:g}", f"{top1:.4f}", "", report.sets["clean"]["n"]])
    report.to_json(out / REPORT_JSON)
    images = _write_figures(report, out, baseline) if plots else []
    try:
        (out / REPORT_MD).write_text(format_markdown(report, images))
    except Exception as err:  # the JSON is the record; a rendering bug must not lose the run
        log.warning("could not write %s: %s", out / REPORT_MD, err)
    return report


def _write_figures(report: Report, out: Path, baseline: str | Path | Report | None) -> list[tuple[str, str]]:
    """Draw the run's figures into ``out``; returns ``(caption, file name)`` of those written."""
    from robustnoise.report import plots

    jobs: list[tuple[str, str, Callable[[Path], Any]]] = [
        ("accuracy vs severity", SEVERITY_PNG, lambda path: plots.plot_severity_curves(report, path)),
        ("corruption x severity", HEATMAP_PNG, lambda path: plots.plot_heatmap(report, path)),
    ]
    if report.gaussian_sigmas:
        jobs.append(
            ("accuracy vs sigma", SIGMA_PNG, lambda path: plots.plot_sigma_bands([(report.label, [report])], path))
        )
    if baseline is not None:
        try:
            base = baseline if isinstance(baseline, Report) else Report.load(baseline)
            name = f"bars_vs_{safe_filename(base.label)}.png"
            jobs.append(
                (f"per corruption vs {base.label}", name, lambda path: plots.plot_corruption_bars(report, base, path))
            )
        except Exception as err:
            log.warning("no comparison with the baseline %s: %s", baseline, err)
    return plots.draw(jobs, out, log.warning)


def _fmt(value: float) -> str:
    return "  -  " if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:5.1f}"


def format_table(reports: Sequence[Report], names: Sequence[str]) -> str:
    """One row per report: clean, mean-C, then each corruption x severity (top-1, %); then adversarial-noise accuracy
    and eps* of the reports that computed them.

    mean-C is ``c_top1`` of :func:`robustnoise.metrics.robustness_summary`, the report's "-C top-1" and the loggers'
    ``test_c/mean_acc``: the benchmark corruptions only (the ImageNet-C holdouts are listed, not averaged)."""
    set_keys = list(dict.fromkeys(k for r in reports for k in r.sets if k != "clean"))
    short = {k: _short(k) for k in set_keys}
    width = max(8, *(len(n) for n in names))
    header = f"{'method':<{width}} clean  mean-C " + " ".join(f"{short[k]:>5}" for k in set_keys)
    lines = [header, "-" * len(header)]
    for name, report in zip(names, reports):
        cells = " ".join(_fmt(report.sets.get(k, {}).get("top1", NAN)) for k in set_keys)
        lines.append(f"{name:<{width}} {_fmt(report.metric('clean_top1'))}  {_fmt(report.metric('c_top1'))}  {cells}")
    if set_keys:
        lines.append("")
        lines.append("columns: " + ", ".join(sorted({f"{short[k][:-1]}=<{k.split('/')[0]}>" for k in set_keys})))
        lines.append("digit = severity; accuracies are top-1 % on the test split; mean-C without holdout corruptions")
    for name, report in zip(names, reports):
        extra = []
        mean, std, epsilon = report.adversarial()
        if not math.isnan(mean):
            worst = fmt(report.adversarial_worst())
            extra.append(f"adversarial noise (eps {epsilon:.2f}) {_pm(mean, std, 1)} %, worst {worst} %")
        extra += [f"eps* {d} {_pm(*report.eps_value(d), 2)}" for d in eps_directions([report])]
        if extra:
            lines.append(f"{name}: " + "; ".join(extra))
    return "\n".join(lines)


def _short(key: str) -> str:
    name, _, sev = key.partition("/s")
    abbrev = "".join(part[:2] for part in name.split("_"))[:4]
    return f"{abbrev}{sev}"


def fmt(value: Any, digits: int = 1) -> str:
    """A number with ``digits`` decimals, or ``–`` when missing / NaN."""
    value = num(value)
    return MISSING if math.isnan(value) else f"{value:.{digits}f}"


def safe_filename(text: str, max_len: int = 80) -> str:
    return (re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("_") or "run")[:max_len]


def severity_label(report: Report, severity: int) -> str:
    """A severity column's label: ``s<severity>``, or ``one level`` for MNIST-C's sets, which have no severities
    (Mu & Gilmer 2019; keyed ``s1``). A -C set made at a chosen severity keeps that severity."""
    return "one level" if report.benchmark is Benchmark.MNIST_C and severity == 1 else f"s{severity}"


# --------------------------------------------------------------------------------------------------------------
# Seeds as the unit: a group of runs that differ only in their seed gives one interval per number.

T_INTERVAL_MIN_N = 5
"""From this many seeds on, a group's interval is the 95 % t confidence interval of the mean; below, min–max."""


class Interval(NamedTuple):
    """Mean of a number over a group's seeds, its interval ``[lo, hi]`` and the seed count ``n``."""

    mean: float
    lo: float
    hi: float
    n: int


def seed_interval(values: Sequence[float]) -> Interval:
    """The mean and interval of the finite ``values`` (one per seed): min–max for n < 5, else the 95 % t confidence
    interval of the mean, ``mean ± t(0.975, n - 1) s / sqrt(n)``."""
    finite = [float(v) for v in values if not math.isnan(num(v))]
    n = len(finite)
    if not n:
        return Interval(NAN, NAN, NAN, 0)
    mean = sum(finite) / n
    if n < T_INTERVAL_MIN_N:
        return Interval(mean, min(finite), max(finite), n)
    from scipy.stats import t

    half = float(t.ppf(0.975, n - 1)) * statistics.stdev(finite) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def separated(a: Interval, b: Interval) -> int:
    """+1 if ``a`` lies entirely above ``b``, -1 if entirely below, 0 if the intervals overlap or either group has
    fewer than 2 seeds (one seed says nothing about seed noise)."""
    if a.n < 2 or b.n < 2:
        return 0
    return 1 if a.lo > b.hi else -1 if a.hi < b.lo else 0


def _pm(centre: float, spread: float, digits: int) -> str:
    if math.isnan(centre):
        return MISSING
    return f"{centre:.{digits}f} ± {spread:.{digits}f}" if not math.isnan(spread) else f"{centre:.{digits}f}"


# --------------------------------------------------------------------------------------------------------------
# Tables


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A markdown table with padded columns (readable as plain text too); ``align``: ``l``/``r`` per column
    (default: first column left, the others right)."""
    align = align or "l" + "r" * (len(header) - 1)
    widths = [max(3, len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        padded = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align)]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w - 1) + ":" if a == "r" else "-" * w for w, a in zip(widths, align)]
    return "\n".join([line(header), "| " + " | ".join(rule) + " |", *(line(r) for r in rows)])


def _c_label(reports: Sequence[Report]) -> str:
    datas = {str(r.data or "").lower() for r in reports}
    data = datas.pop() if len(datas) == 1 else ""  # the benchmark's short name only when every run shares the data
    labels = {"tiny": "TIN-C", "imagenet": "IN-C", "cifar100": "C100-C", "cifar10": "C10-C", "mnist": "MNIST-C"}
    return next((label for key, label in labels.items() if key in data), "-C")


_OPTIONAL = ("no_noise_top1", "unnormalized_mce", "holdout_top1")


def summary_columns(reports: Sequence[Report]) -> list[tuple[str, Callable[[Report], str]]]:
    """The summary columns that apply to ``reports``: ``(header, cell of a report)``."""
    metrics = [r.metrics for r in reports]
    # mCE columns of ImageNet-C reports show even when incomplete (as "–"); the others only when some run has them
    has = {key: any(not math.isnan(m.get(key, NAN)) for m in metrics) for key in _OPTIONAL}
    has["mce"] = any("mce" in m for m in metrics)
    c = _c_label(reports)

    def acc(key: str) -> Callable[[Report], str]:
        return lambda r: fmt(r.metric(key))

    cols: list[tuple[str, Callable[[Report], str]]] = [
        ("clean top-1", acc("clean_top1")),
        ("clean top-5", acc("clean_top5")),
        (f"{c} top-1", acc("c_top1")),
        (f"{c} top-5", acc("c_top5")),
    ]
    if has["no_noise_top1"]:
        cols += [("w/o noises top-1", acc("no_noise_top1")), ("w/o noises top-5", acc("no_noise_top5"))]
    if has["mce"]:
        cols += [("mCE", acc("mce")), ("rel. mCE", acc("relative_mce"))]
    elif has["unnormalized_mce"]:
        cols.append(("unnorm. mCE", acc("unnormalized_mce")))
    if has["holdout_top1"]:
        cols.append(("holdout top-1", acc("holdout_top1")))
    cols += [(f"eps* {d}", lambda r, d=d: _pm(*r.eps_value(d), 2)) for d in eps_directions(reports)]
    if any(not math.isnan(r.adversarial()[0]) for r in reports):
        cols.append(("adv. noise top-1", lambda r: _pm(*r.adversarial()[:2], 1)))
        cols.append(("adv. noise worst", lambda r: fmt(r.adversarial_worst())))
    return cols + [(f"{n} top-1", lambda r, n=n: fmt(r.attack(n)[0])) for n in attack_names(reports)]


def _stat(value: Any, real: bool) -> str:
    """eps* statistics: norms with 3 decimals, counts as integers, ``inf`` for never flipped."""
    value = num(value)
    if math.isinf(value):
        return "inf"
    if not real and not math.isnan(value) and value.is_integer():
        return str(int(value))
    return fmt(value, 3)


def summary_table(
    reports: Sequence[Report], names: Sequence[str], first: tuple[str, Sequence[str]] | None = None
) -> str:
    """The papers' summary table, one row per report (markdown); ``first``: an extra ``(header, cells)`` column
    shown first (e.g. the swept value)."""
    cols = summary_columns(reports)
    header = ([first[0]] if first else []) + ["run"] + [h for h, _ in cols]
    rows = []
    for i, (name, report) in enumerate(zip(names, reports)):
        rows.append(([str(first[1][i])] if first else []) + [name] + [cell(report) for _, cell in cols])
    align = ("r" if first else "") + "l" + "r" * len(cols)
    return markdown_table(header, rows, align)


def summary_notes(reports: Sequence[Report]) -> list[str]:
    c = _c_label(reports)
    notes = [
        f"Top-1 / top-5 accuracy in % on the test split. {c}: mean over the benchmark corruptions evaluated and "
        "their severities (holdout corruptions apart)."
    ]
    headers = [h for h, _ in summary_columns(reports)]
    if "w/o noises top-1" in headers:
        notes.append("w/o noises: mean over the 12 benchmark corruptions other than gaussian / shot / impulse noise.")
    if "mCE" in headers:
        notes.append("mCE / rel. mCE: corruption errors normalised by AlexNet's (Hendrycks & Dietterich 2019), %.")
    elif "unnorm. mCE" in headers:
        notes.append("unnorm. mCE: mean top-1 error over the benchmark corruptions and severities, %.")
    if eps_directions(reports):
        notes.append(
            "eps*: the smallest l2 noise norm that flips the prediction, per direction: median over the test images "
            "(adversarial: mean ± std of those medians over the generators' seeds)."
        )
    eps = sorted({r.adversarial()[2] for r in reports if not math.isnan(r.adversarial()[2])})
    if eps:
        notes.append(
            "adv. noise: accuracy under freshly trained adversarial noise generators, mean ± std over the generators' "
            f"seeds, and under the strongest generator (worst; eps = {', '.join(f'{e:g}' for e in eps)})."
        )
    attacks = [
        (n, sorted({r.attack(n)[1] for r in reports if not math.isnan(r.attack(n)[1])})) for n in attack_names(reports)
    ]
    if attacks:
        shown = "; ".join(f"{n} at eps = {', '.join(f'{e:g}' for e in eps)}" for n, eps in attacks)
        notes.append(f"attacks: accuracy under {shown}.")
    notes.append(f"{MISSING}: not evaluated, or the benchmark is incomplete.")
    return notes


def corruption_table(report: Report) -> str:
    """Per corruption: top-1 / top-5 averaged over the severities and the CE where available (markdown)."""
    main, holdouts = report.corruptions()
    metrics = report.metrics
    normalized = "mce" in metrics
    ce_header = "CE" if normalized else "error"

    def row(name: str, label: str) -> list[str]:
        ce = metrics.get(f"{name}/ce", NAN)
        if math.isnan(ce) and not normalized:
            ce = 100.0 - report.corruption_accuracy(name)
        return [label, fmt(report.corruption_accuracy(name)), fmt(report.corruption_accuracy(name, "top5")), fmt(ce)]

    def mean_row(label: str, table: list[list[str]]) -> list[str]:
        return [label] + [fmt(_mean([num(r[i]) for r in table])) for i in (1, 2, 3)]

    main_rows = [row(name, name) for name in main]
    holdout_rows = [row(name, f"{name} (holdout)") for name in holdouts]
    rows = main_rows + ([mean_row("**mean**", main_rows)] if len(main_rows) > 1 else [])
    rows += holdout_rows + ([mean_row("**holdout mean**", holdout_rows)] if len(holdout_rows) > 1 else [])
    return markdown_table(["corruption", "top-1", "top-5", ce_header], rows)


def _mean(values: Sequence[float]) -> float:
    """Mean of the finite values; NaN if there is none."""
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else NAN


def severity_table(report: Report, field: str = "top1") -> str:
    """Corruption x severity accuracy (markdown), with the mean per corruption and per severity."""
    matrix = report.matrix(field)
    severities = sorted({s for row in matrix.values() for s in row})
    main, holdouts = report.corruptions()

    def line(label: str, row: dict[int, float]) -> list[str]:
        return [label] + [fmt(row.get(s)) for s in severities] + [fmt(_mean(list(row.values())))]

    rows = [line(name, matrix.get(name, {})) for name in main]
    if len(main) > 1:
        per_sev = [_mean([matrix[c][s] for c in main if s in matrix.get(c, {})]) for s in severities]
        rows.append(["**mean**"] + [fmt(v) for v in per_sev] + [fmt(_mean(per_sev))])
    rows += [line(f"{name} (holdout)", matrix.get(name, {})) for name in holdouts]
    return markdown_table(["corruption"] + [severity_label(report, s) for s in severities] + ["mean"], rows)


def format_markdown(report: Report, images: Sequence[tuple[str, str]] = ()) -> str:
    """``robustness.md``: the summary, per-corruption and corruption x severity tables of one report."""
    name = report.label
    clean_n = num(report.sets.get("clean", {}).get("n"))
    who = {"method": report.method, "model": report.model, "data": report.data}
    described = ", ".join(f"{k} `{v}`" for k, v in who.items() if v is not None)
    lines = [f"# Robustness report: {name}", ""]
    if described or not math.isnan(clean_n):
        images_n = "" if math.isnan(clean_n) else f"; {int(clean_n)} test images"
        preset = f"; corruption preset `{report.preset}`" if report.preset else ""
        lines += [f"{described or 'run'}{images_n}{preset}.", ""]
    lines += ["## Summary", "", summary_table([report], [name]), ""]
    lines += [f"- {note}" for note in summary_notes([report])] + [""]
    if report.corruptions() != ([], []):
        error = "CE: AlexNet-normalised corruption error" if "mce" in report.metrics else "error: top-1 error"
        note = f"Accuracies averaged over the severities evaluated; {error} (%)."
        lines += ["## Per corruption", "", note, "", corruption_table(report), ""]
        lines += ["## Corruption x severity (top-1 %)", ""]
        clean = report.metric("clean_top1")
        lines += [f"Clean: {fmt(clean)}.", "", severity_table(report), ""]
    adv_mean, adv_std, adv_eps = report.adversarial()
    per_seed = (report.adversarial_noise or {}).get("per_seed") if not math.isnan(adv_mean) else None
    if per_seed:
        lines += ["## Adversarial noise", ""]
        lines += [f"eps = {fmt(adv_eps, 3)}; accuracy per seed: {', '.join(fmt(v, 2) for v in per_seed)}.", ""]
    sigmas = report.gaussian_sigmas
    if sigmas:
        lines += ["## Gaussian noise clip(x + sigma n) (top-1 %)", ""]
        lines += [markdown_table(["sigma", *(f"{s:g}" for s in sigmas)], [["top-1", *map(fmt, sigmas.values())]]), ""]
    eps = report.eps_star
    if eps:
        lines += ["## eps* (smallest l2 noise norm that flips the prediction)", ""]
        first = ("median", "mean", "std")
        stats = sorted(
            {k for v in eps.values() for k, x in v.items() if not isinstance(x, (list, dict))},
            key=lambda k: (k not in first, first.index(k) if k in first else 0, k),
        )
        rows = [
            [d] + [_stat(eps[d].get(k), k in first) for k in stats] for d in eps_directions([report], per_seed=True)
        ]
        lines += [markdown_table(["direction", *stats], rows), ""]
    if images:
        lines += ["## Figures", ""]
        lines += [f"![{caption}]({file})" for caption, file in images] + [""]
    return "\n".join(lines)
