"""Robustness reports: CSV + JSON + markdown (+ figures) in the run directory, printed tables, comparisons of runs.

``robustness.json`` holds the summary of :func:`robustnoise.report.schema.summarize`, every evaluated set, the run's
metadata and, when the evaluation computed them, ``metrics`` (the flat dict of
:func:`robustnoise.metrics.robustness_summary`), ``eps_star``, ``adversarial_noise`` (per generator, mean, worst),
``gaussian_sigmas`` (top-1 under ``clip(x + sigma n)`` per sigma), ``preset`` and ``seed``. ``robustness.md`` renders
it like the papers' tables: a summary row, the per-corruption table and the corruption x severity table. Every
reader here tolerates missing keys (old reports, partial evaluations): missing numbers print as ``–``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import statistics
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from robustnoise.corruptions.presets import HOLDOUT_CORRUPTIONS
from robustnoise.metrics import Benchmark, accuracy_matrix, robustness_summary
from robustnoise.report.schema import summarize

log = logging.getLogger(__name__)

REPORT_JSON = "robustness.json"
REPORT_CSV = "robustness.csv"
REPORT_MD = "robustness.md"
SEVERITY_PNG = "severity_curves.png"
HEATMAP_PNG = "heatmap.png"
SIGMA_PNG = "sigma_curve.png"
MISSING = "–"
NAN = float("nan")
EPS_DIRECTIONS: tuple[str, ...] = ("gaussian", "uniform", "adversarial")
"""Display order of the ``eps_star`` directions (others follow alphabetically)."""


def write_report(
    accuracies: dict[str, dict[str, float]],
    out_dir: str | Path,
    meta: dict[str, Any],
    baseline: str | Path | Mapping[str, Any] | None = None,
    plots: bool = True,
) -> dict[str, Any]:
    """Write the robustness report of one evaluation to ``out_dir`` and return it.

    Files: ``robustness.csv`` (a row per set), ``robustness.json`` (``meta`` + summary + every set),
    ``robustness.md`` (the tables) and, with ``plots``, ``severity_curves.png`` and ``heatmap.png``; with a
    ``baseline`` (a run directory or a loaded report), also ``bars_vs_<baseline>.png``. Figures are best effort: a
    failure to draw one is logged as a warning and never fails the run.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / REPORT_CSV, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["corruption", "severity", "top1", "top5", "n"])
        for key, acc in accuracies.items():
            name, _, sev = key.partition("/s")
            writer.writerow([name, sev or 0, f"{acc['top1']:.4f}", f"{acc['top5']:.4f}", acc["n"]])
        for sigma, top1 in sigma_accuracies(meta).items():  # the sigma sweep: severity column = sigma
            writer.writerow(["gaussian_sigma", f"{sigma:g}", f"{top1:.4f}", "", accuracies["clean"]["n"]])
    report = {**meta, **summarize(accuracies), "sets": accuracies}
    (out / REPORT_JSON).write_text(json.dumps(report, indent=2, allow_nan=True))

    images: list[tuple[str, str]] = []
    if plots:
        images = _write_figures(report, out, baseline)
    try:
        (out / REPORT_MD).write_text(format_markdown(report, images))
    except Exception as err:  # the JSON is the record; a rendering bug must not lose the run
        log.warning("could not write %s: %s", out / REPORT_MD, err)
    return report


def _write_figures(
    report: Mapping[str, Any], out: Path, baseline: str | Path | Mapping[str, Any] | None
) -> list[tuple[str, str]]:
    """Draw the run's figures into ``out``; returns ``(caption, file name)`` of those written."""
    try:
        from robustnoise.report import plots
    except Exception as err:  # e.g. matplotlib missing
        log.warning("no figures: cannot import matplotlib (%s)", err)
        return []
    jobs: list[tuple[str, str, Callable[[], Any]]] = [
        ("accuracy vs severity", SEVERITY_PNG, lambda: plots.plot_severity_curves(report, out / SEVERITY_PNG)),
        ("corruption x severity", HEATMAP_PNG, lambda: plots.plot_heatmap(report, out / HEATMAP_PNG)),
    ]
    if sigma_accuracies(report):
        curve = [(run_label(report), [report])]
        jobs.append(("accuracy vs sigma", SIGMA_PNG, lambda: plots.plot_sigma_bands(curve, out / SIGMA_PNG)))
    if baseline is not None:
        try:
            base = baseline if isinstance(baseline, Mapping) else load_report(baseline)
            name = f"bars_vs_{safe_filename(run_label(base))}.png"
            jobs.append((f"per corruption vs {run_label(base)}", name, _bars_job(plots, report, base, out / name)))
        except Exception as err:
            log.warning("no comparison with the baseline %s: %s", baseline, err)
    written = []
    for caption, name, job in jobs:
        try:
            job()
            written.append((caption, name))
        except Exception as err:
            log.warning("could not draw %s: %s", out / name, err)
    return written


def _bars_job(plots: Any, report: Mapping[str, Any], base: Mapping[str, Any], path: Path) -> Callable[[], Any]:
    return lambda: plots.plot_corruption_bars(report, base, path)


def load_report(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / REPORT_JSON
    if not path.is_file():
        raise FileNotFoundError(f"no {REPORT_JSON} in {run_dir}: was the run evaluated (task=train or task=eval)?")
    return json.loads(path.read_text())


def _fmt(value: float) -> str:
    return "  -  " if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:5.1f}"


def format_table(reports: Sequence[dict[str, Any]], names: Sequence[str] | None = None) -> str:
    """One row per report: clean, mean-C, then each corruption x severity (top-1, %); then adversarial-noise accuracy
    and eps* of the reports that computed them.

    mean-C is ``c_top1`` of :func:`robustnoise.metrics.robustness_summary`, the report's "-C top-1" and the loggers'
    ``test_c/mean_acc``: the benchmark corruptions only (the ImageNet-C holdouts are listed, not averaged)."""
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
        lines.append(f"{name:<{width}} {_fmt(metric(report, 'clean_top1'))}  {_fmt(metric(report, 'c_top1'))}  {cells}")
    if set_keys:
        lines.append("")
        lines.append("columns: " + ", ".join(sorted({f"{short[k][:-1]}=<{k.split('/')[0]}>" for k in set_keys})))
        lines.append("digit = severity; accuracies are top-1 % on the test split; mean-C without holdout corruptions")
    for name, report in zip(names, reports):
        extra = []
        mean, std, epsilon = adversarial(report)
        if not math.isnan(mean):
            extra.append(
                f"adversarial noise (eps {epsilon:.2f}) {_pm(mean, std, 1)} %, worst {fmt(adversarial_worst(report))} %"
            )
        extra += [f"eps* {d} {_pm(*eps_value(report, d), 2)}" for d in eps_directions([report])]
        if extra:
            lines.append(f"{name}: " + "; ".join(extra))
    return "\n".join(lines)


def _short(key: str) -> str:
    name, _, sev = key.partition("/s")
    abbrev = "".join(part[:2] for part in name.split("_"))[:4]
    return f"{abbrev}{sev}"


# --------------------------------------------------------------------------------------------------------------
# Reading a report: every accessor tolerates missing keys and returns NaN / empty containers instead.


def num(value: Any) -> float:
    """``value`` as a float; NaN for None, non-numbers and booleans."""
    if isinstance(value, bool) or value is None:
        return NAN
    try:
        return float(value)
    except (TypeError, ValueError):
        return NAN


def fmt(value: Any, digits: int = 1) -> str:
    """A number with ``digits`` decimals, or ``–`` when missing / NaN."""
    value = num(value)
    return MISSING if math.isnan(value) else f"{value:.{digits}f}"


def run_label(report: Mapping[str, Any], default: str = "run") -> str:
    """The name a report is shown under: its ``run_name``, else its ``method``, else ``default``."""
    return str(report.get("run_name") or report.get("method") or default)


def safe_filename(text: str, max_len: int = 80) -> str:
    return (re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("_") or "run")[:max_len]


def _benchmark(report: Mapping[str, Any]) -> str:
    """The metric family of a report: its ``benchmark``, else guessed from ``data`` (reports before that key)."""
    if report.get("benchmark") in {*Benchmark, "imagenet", "tinyimagenet", "cifar", "mnist"}:
        return Benchmark(report["benchmark"])
    data = str(report.get("data", "")).lower()
    if "mnist" in data and data.endswith("-c"):
        return "mnist"
    if data == "imagenet-c":
        return "imagenet"
    if data == "tiny-imagenet-c":
        return "tinyimagenet"
    return "generated"


def report_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """The report's ``metrics``; for reports written without them, recomputed from its ``sets``.

    The fallback uses the benchmark implied by ``data`` (released ImageNet-C / Tiny-ImageNet-C / MNIST-C, else
    ``generated``: unnormalised numbers only) and stays silent about incomplete benchmarks (the values are NaN).
    """
    metrics = report.get("metrics")
    if isinstance(metrics, Mapping):
        return {str(k): num(v) for k, v in metrics.items()}
    sets = report.get("sets")
    if not isinstance(sets, Mapping) or not sets:
        return {"clean_top1": num(report.get("clean_top1")), "clean_top5": num(report.get("clean_top5"))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return robustness_summary(sets, benchmark=_benchmark(report))
        except Exception as err:
            log.debug("cannot recompute the metrics of %s: %s", run_label(report), err)
            return {"clean_top1": num(report.get("clean_top1")), "clean_top5": num(report.get("clean_top5"))}


def metric(report: Mapping[str, Any], key: str) -> float:
    """One number of :func:`report_metrics` (NaN if absent); ``c_top1``/``c_top5`` fall back to the plain
    ``corrupted_top1``/``corrupted_top5`` mean of the report (every corruption evaluated)."""
    value = report_metrics(report).get(key, NAN)
    if math.isnan(value) and key in ("c_top1", "c_top5", "clean_top1", "clean_top5"):
        value = num(report.get(key.replace("c_", "corrupted_") if key.startswith("c_") else key))
    return value


def is_mnist_c(report: Mapping[str, Any]) -> bool:
    return _benchmark(report) == Benchmark.MNIST_C


def severity_label(report: Mapping[str, Any], severity: int) -> str:
    """A severity column's label: ``s<severity>``, or ``one level`` for MNIST-C's sets, which have no severities
    (Mu & Gilmer 2019; keyed ``s1``). A -C set made at a chosen severity keeps that severity."""
    return "one level" if is_mnist_c(report) and severity == 1 else f"s{severity}"


def severity_matrix(report: Mapping[str, Any], field: str = "top1") -> dict[str, dict[int, float]]:
    """``{corruption: {severity: accuracy %}}`` of the report's sets, corruptions in evaluation order."""
    sets = report.get("sets")
    return accuracy_matrix(sets, field) if isinstance(sets, Mapping) else {}


def corruptions(report: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """``(benchmark corruptions, holdouts)`` evaluated, in evaluation order; holdouts are the 4 ImageNet-C extras
    (none for MNIST-C, where ``spatter`` belongs to the benchmark)."""
    names = list(severity_matrix(report))
    for name in report.get("per_corruption") or {}:
        if name not in names:
            names.append(name)
    if is_mnist_c(report):
        return [n for n in names if n != "identity"], []
    return [n for n in names if n not in HOLDOUT_CORRUPTIONS], [n for n in names if n in HOLDOUT_CORRUPTIONS]


def corruption_accuracy(report: Mapping[str, Any], corruption: str, field: str = "top1") -> float:
    """Accuracy (%) under one corruption, averaged over its severities; NaN if not evaluated."""
    row = severity_matrix(report, field).get(corruption)
    if row:
        return sum(row.values()) / len(row)
    return num((report.get("per_corruption") or {}).get(corruption, {}).get(field))


def eps_star(report: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """``eps_star`` as ``{direction: {statistic: value}}`` (a bare number becomes ``{"median": value}``)."""
    raw = report.get("eps_star")
    if not isinstance(raw, Mapping):
        return {}
    out: dict[str, dict[str, float]] = {}
    for direction, value in raw.items():
        if isinstance(value, Mapping):
            out[str(direction)] = {str(k): num(v) for k, v in value.items() if not isinstance(v, (list, dict))}
        else:
            out[str(direction)] = {"median": num(value)}
    return out


def eps_directions(reports: Sequence[Mapping[str, Any]], per_seed: bool = False) -> list[str]:
    """The eps* directions of ``reports`` in display order; without ``per_seed``, the per-generator entries
    ``adversarial_<k>`` are left out when their summary ``adversarial`` is there."""
    present: set[str] = set()
    for report in reports:
        present |= set(eps_star(report))
    if not per_seed and "adversarial" in present:
        present = {d for d in present if not re.fullmatch(r"adversarial_\d+", d)}
    return [d for d in EPS_DIRECTIONS if d in present] + sorted(present - set(EPS_DIRECTIONS), key=_natural)


def _natural(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def eps_value(report: Mapping[str, Any], direction: str) -> tuple[float, float]:
    """``(centre, spread)`` of eps* in one direction: the median (else the mean) and the std (NaN if absent)."""
    stats = eps_star(report).get(direction, {})
    median = stats.get("median", NAN)
    if not math.isnan(median):
        return median, NAN
    return stats.get("mean", NAN), stats.get("std", NAN)


def sigma_accuracies(report: Mapping[str, Any]) -> dict[float, float]:
    """``{sigma: top-1 %}`` under ``clip(x + sigma n)`` (``eval.gaussian_sigmas``), sorted by sigma; empty if absent."""
    raw = report.get("gaussian_sigmas")
    if not isinstance(raw, Mapping):
        return {}
    return dict(sorted((num(k), num(v)) for k, v in raw.items()))


def adversarial_worst(report: Mapping[str, Any]) -> float:
    """Accuracy under the strongest of the adversarial noise generators (the attacker's view); NaN if absent."""
    adv = report.get("adversarial_noise")
    if not isinstance(adv, Mapping):
        return NAN
    per_seed = [num(v) for v in adv.get("per_seed") or []]
    return num(adv.get("worst", min(per_seed) if per_seed else None))


def eps_worst(report: Mapping[str, Any]) -> float:
    """The smallest median eps* over the adversarial generators (the attacker's view); NaN if none."""
    per_generator = [v.get("median", NAN) for k, v in eps_star(report).items() if re.fullmatch(r"adversarial_\d+", k)]
    return min(per_generator) if per_generator else NAN


def adversarial(report: Mapping[str, Any]) -> tuple[float, float, float]:
    """``(mean, std, epsilon)`` of the accuracy under adversarial noise; NaNs if not evaluated."""
    adv = report.get("adversarial_noise")
    if not isinstance(adv, Mapping):
        return NAN, NAN, NAN
    return num(adv.get("mean")), num(adv.get("std")), num(adv.get("epsilon"))


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


def _c_label(reports: Sequence[Mapping[str, Any]]) -> str:
    datas = {str(r.get("data", "")).lower() for r in reports}
    if len(datas) == 1:
        data = datas.pop()
        for key, label in (("tiny", "TIN-C"), ("imagenet", "IN-C"), ("cifar100", "C100-C"), ("cifar10", "C10-C")):
            if key in data:
                return label
        if "mnist" in data:
            return "MNIST-C"
    return "-C"


_OPTIONAL = ("no_noise_top1", "unnormalized_mce", "holdout_top1")


def summary_columns(reports: Sequence[Mapping[str, Any]]) -> list[tuple[str, Callable[[Mapping[str, Any]], str]]]:
    """The summary columns that apply to ``reports``: ``(header, cell of a report)``."""
    metrics = [report_metrics(r) for r in reports]
    # mCE columns of ImageNet-C reports show even when incomplete (as "–"); the others only when some run has them
    has = {key: any(not math.isnan(m.get(key, NAN)) for m in metrics) for key in _OPTIONAL}
    has["mce"] = any("mce" in m for m in metrics)
    c = _c_label(reports)

    def acc(key: str) -> Callable[[Mapping[str, Any]], str]:
        return lambda r: fmt(metric(r, key))

    cols: list[tuple[str, Callable[[Mapping[str, Any]], str]]] = [
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
    for direction in eps_directions(reports):
        cols.append((f"eps* {direction}", _eps_cell(direction)))
    if any(not math.isnan(adversarial(r)[0]) for r in reports):
        cols.append(("adv. noise top-1", lambda r: _pm(*adversarial(r)[:2], 1)))
        cols.append(("adv. noise worst", lambda r: fmt(adversarial_worst(r))))
    for name in attack_names(reports):
        cols.append((f"{name} top-1", _attack_cell(name)))
    return cols


def _attack_cell(name: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda r: fmt(attack(r, name)[0])


def attack_names(reports: Sequence[Mapping[str, Any]]) -> list[str]:
    """Names of the adversarial attacks evaluated in any of ``reports`` (``attacks`` key), in first-seen order."""
    names: list[str] = []
    for report in reports:
        attacks = report.get("attacks")
        if isinstance(attacks, Mapping):
            names += [str(n) for n in attacks if n not in names]
    return names


def attack(report: Mapping[str, Any], name: str) -> tuple[float, float]:
    """``(accuracy %, epsilon)`` under one attack; NaNs if not evaluated."""
    result = (report.get("attacks") or {}).get(name)
    if not isinstance(result, Mapping):
        return NAN, NAN
    return num(result.get("accuracy")), num(result.get("epsilon"))


def _stat(value: Any, real: bool) -> str:
    """eps* statistics: norms with 3 decimals, counts as integers, ``inf`` for never flipped."""
    value = num(value)
    if math.isinf(value):
        return "inf"
    if not real and not math.isnan(value) and value.is_integer():
        return str(int(value))
    return fmt(value, 3)


def _eps_cell(direction: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda r: _pm(*eps_value(r, direction), 2)


def summary_table(
    reports: Sequence[Mapping[str, Any]],
    names: Sequence[str] | None = None,
    first: tuple[str, Sequence[str]] | None = None,
) -> str:
    """The papers' summary table, one row per report (markdown); ``first``: an extra ``(header, cells)`` column
    shown first (e.g. the swept value)."""
    names = list(names or [run_label(r, f"run{i}") for i, r in enumerate(reports)])
    cols = summary_columns(reports)
    header = ([first[0]] if first else []) + ["run"] + [h for h, _ in cols]
    rows = []
    for i, (name, report) in enumerate(zip(names, reports)):
        rows.append(([str(first[1][i])] if first else []) + [name] + [cell(report) for _, cell in cols])
    align = ("r" if first else "") + "l" + "r" * len(cols)
    return markdown_table(header, rows, align)


def summary_notes(reports: Sequence[Mapping[str, Any]]) -> list[str]:
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
    eps = sorted({adversarial(r)[2] for r in reports if not math.isnan(adversarial(r)[2])})
    if eps:
        notes.append(
            "adv. noise: accuracy under freshly trained adversarial noise generators, mean ± std over the generators' "
            f"seeds, and under the strongest generator (worst; eps = {', '.join(f'{e:g}' for e in eps)})."
        )
    attacks = [
        (n, sorted({attack(r, n)[1] for r in reports if not math.isnan(attack(r, n)[1])}))
        for n in attack_names(reports)
    ]
    if attacks:
        shown = "; ".join(f"{n} at eps = {', '.join(f'{e:g}' for e in eps)}" for n, eps in attacks)
        notes.append(f"attacks: accuracy under {shown}.")
    notes.append(f"{MISSING}: not evaluated, or the benchmark is incomplete.")
    return notes


def corruption_table(report: Mapping[str, Any]) -> str:
    """Per corruption: top-1 / top-5 averaged over the severities and the CE where available (markdown)."""
    main, holdouts = corruptions(report)
    metrics = report_metrics(report)
    normalized = "mce" in metrics
    ce_header = "CE" if normalized else "error"

    def row(name: str, label: str) -> list[str]:
        ce = metrics.get(f"{name}/ce", NAN)
        if math.isnan(ce) and not normalized:
            ce = 100.0 - corruption_accuracy(report, name)
        return [label, fmt(corruption_accuracy(report, name)), fmt(corruption_accuracy(report, name, "top5")), fmt(ce)]

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


def severity_table(report: Mapping[str, Any], field: str = "top1") -> str:
    """Corruption x severity accuracy (markdown), with the mean per corruption and per severity."""
    matrix = severity_matrix(report, field)
    severities = sorted({s for row in matrix.values() for s in row})
    main, holdouts = corruptions(report)

    mean = _mean
    rows = []
    for name in main:
        row = matrix.get(name, {})
        rows.append([name] + [fmt(row.get(s)) for s in severities] + [fmt(mean(list(row.values())))])
    if len(main) > 1:
        per_sev = [mean([matrix[c][s] for c in main if s in matrix.get(c, {})]) for s in severities]
        rows.append(["**mean**"] + [fmt(v) for v in per_sev] + [fmt(mean(per_sev))])
    for name in holdouts:
        row = matrix.get(name, {})
        rows.append([f"{name} (holdout)"] + [fmt(row.get(s)) for s in severities] + [fmt(mean(list(row.values())))])
    return markdown_table(["corruption"] + [severity_label(report, s) for s in severities] + ["mean"], rows)


def format_markdown(report: Mapping[str, Any], images: Sequence[tuple[str, str]] = ()) -> str:
    """``robustness.md``: the summary, per-corruption and corruption x severity tables of one report."""
    name = run_label(report)
    clean_n = num((report.get("sets") or {}).get("clean", {}).get("n"))
    described = ", ".join(f"{k} `{report[k]}`" for k in ("method", "model", "data") if report.get(k) is not None)
    lines = [f"# Robustness report: {name}", ""]
    if described or not math.isnan(clean_n):
        images_n = "" if math.isnan(clean_n) else f"; {int(clean_n)} test images"
        preset = f"; corruption preset `{report['preset']}`" if report.get("preset") else ""
        lines += [f"{described or 'run'}{images_n}{preset}.", ""]
    lines += ["## Summary", "", summary_table([report], [name]), ""]
    lines += [f"- {note}" for note in summary_notes([report])] + [""]
    if corruptions(report) != ([], []):
        error = "CE: AlexNet-normalised corruption error" if "mce" in report_metrics(report) else "error: top-1 error"
        note = f"Accuracies averaged over the severities evaluated; {error} (%)."
        lines += ["## Per corruption", "", note, "", corruption_table(report), ""]
        lines += ["## Corruption x severity (top-1 %)", ""]
        clean = metric(report, "clean_top1")
        lines += [f"Clean: {fmt(clean)}.", "", severity_table(report), ""]
    adv_mean, adv_std, adv_eps = adversarial(report)
    per_seed = (report.get("adversarial_noise") or {}).get("per_seed") if not math.isnan(adv_mean) else None
    if per_seed:
        lines += ["## Adversarial noise", ""]
        lines += [f"eps = {fmt(adv_eps, 3)}; accuracy per seed: {', '.join(fmt(v, 2) for v in per_seed)}.", ""]
    sigmas = sigma_accuracies(report)
    if sigmas:
        lines += ["## Gaussian noise clip(x + sigma n) (top-1 %)", ""]
        lines += [markdown_table(["sigma", *(f"{s:g}" for s in sigmas)], [["top-1", *map(fmt, sigmas.values())]]), ""]
    eps = eps_star(report)
    if eps:
        lines += ["## eps* (smallest l2 noise norm that flips the prediction)", ""]
        first = ("median", "mean", "std")
        stats = sorted(
            {k for v in eps.values() for k in v}, key=lambda k: (k not in first, first.index(k) if k in first else 0, k)
        )
        rows = [
            [d] + [_stat(eps[d].get(k), k in first) for k in stats] for d in eps_directions([report], per_seed=True)
        ]
        lines += [markdown_table(["direction", *stats], rows), ""]
    if images:
        lines += ["## Figures", ""]
        lines += [f"![{caption}]({file})" for caption, file in images] + [""]
    return "\n".join(lines)
