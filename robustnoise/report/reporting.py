"""The report of one run: ``robustness.json`` (:class:`Report`, also as written before :class:`Benchmark`),
robustness.csv and .md (the papers' tables; ``–`` for missing numbers), figures and the printed table."""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from robustnoise.metrics import Benchmark, accuracy_matrix, mean, num, robustness_summary

log = logging.getLogger(__name__)

REPORT_JSON = "robustness.json"
REPORT_CSV = "robustness.csv"
REPORT_MD = "robustness.md"
MISSING = "–"
EPS_DIRECTIONS = ("gaussian", "uniform", "adversarial")  # display order of eps*; others follow alphabetically
_PER_GENERATOR = re.compile(r"adversarial_\d+")


@dataclass
class Report:
    """One evaluation (``robustness.json``): ``sets`` (``{"clean" | "<corruption>/s<k>": {"top1", "top5", "n"}}``),
    their ``metrics``, sigma sweep, adversarial noise and eps* (Rusak et al. 2020, Table 2), attacks."""

    sets: dict[str, dict[str, float]] = field(default_factory=dict)
    method: str | None = None
    run_name: str | None = None
    model: str | None = None
    data: str | None = None
    seed: int | None = None
    benchmark: Benchmark = Benchmark.GENERATED
    preset: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    gaussian_sigmas: dict[float, float] = field(default_factory=dict)
    adversarial_noise: dict[str, Any] = field(default_factory=dict)
    eps_star: dict[str, dict[str, Any]] = field(default_factory=dict)
    attacks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.benchmark = Benchmark.parse(self.benchmark)
        if not self.metrics and self.sets:  # partial sets are normal for generated evaluations: no warning
            self.metrics = robustness_summary(self.sets, self.benchmark, warn=False)
        self.gaussian_sigmas = dict(sorted((float(s), float(a)) for s, a in self.gaussian_sigmas.items()))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Report:
        """A report from the content of ``robustness.json`` (unknown keys, e.g. the derived summary, are ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known and v is not None}
        values["metrics"] = {k: num(v) for k, v in (raw.get("metrics") or {}).items()}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The content of ``robustness.json``; kinds of numbers the evaluation did not compute are left out."""
        out = {k: v for k, v in asdict(self).items() if v not in (None, {}) or k in ("seed", "preset")}
        sets = out.pop("sets", {})
        out["benchmark"] = self.benchmark.value
        if self.gaussian_sigmas:
            out["gaussian_sigmas"] = {f"{s:g}": a for s, a in self.gaussian_sigmas.items()}
        return {**out, **summarize(sets), "sets": sets}

    @classmethod
    def load(cls, run_dir: str | Path) -> Report:
        """The report in ``run_dir``; :class:`FileNotFoundError` if the run was not evaluated."""
        path = Path(run_dir) / REPORT_JSON
        if not path.is_file():
            raise FileNotFoundError(f"no {REPORT_JSON} in {run_dir}: was the run evaluated (task=train or task=eval)?")
        return cls.from_dict(json.loads(path.read_text()))

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, allow_nan=True))

    @property
    def label(self) -> str:
        """The name the report is shown under: its run name, else its method."""
        return str(self.run_name or self.method or "run")

    def metric(self, key: str) -> float:
        """One number of ``metrics`` (NaN if absent, e.g. ``c_top1`` when no benchmark corruption was evaluated)."""
        return num(self.metrics.get(key))

    def matrix(self, field: str = "top1") -> dict[str, dict[int, float]]:
        """``{corruption: {severity: accuracy %}}``, corruptions in evaluation order."""
        return accuracy_matrix(self.sets, field)

    def corruptions(self) -> tuple[list[str], list[str]]:
        """``(benchmark corruptions, holdouts)`` evaluated, in evaluation order (MNIST-C: no holdouts)."""
        held, names = self.benchmark.holdouts, [n for n in self.matrix() if n != self.benchmark.clean_alias]
        return [n for n in names if n not in held], [n for n in names if n in held]

    def corruption_accuracy(self, corruption: str, field: str = "top1") -> float:
        """Accuracy (%) under one corruption, averaged over its severities; NaN if not evaluated."""
        return mean(self.matrix(field).get(corruption, {}).values())

    def eps_value(self, direction: str) -> tuple[float, float]:
        """``(centre, spread)`` of eps* in one direction: the median (else the mean) and the std."""
        stats = self.eps_star.get(direction, {})
        median = num(stats.get("median"))
        return (median, math.nan) if not math.isnan(median) else (num(stats.get("mean")), num(stats.get("std")))

    def eps_worst(self) -> float:
        """The smallest median eps* over the adversarial generators (the attacker's view); NaN if none."""
        medians = [num(v.get("median")) for k, v in self.eps_star.items() if _PER_GENERATOR.fullmatch(k)]
        return min(medians, default=math.nan)

    def adversarial(self) -> tuple[float, float, float]:
        """``(mean, std, epsilon)`` of the accuracy under adversarial noise; NaNs if not evaluated."""
        adv = self.adversarial_noise
        return num(adv.get("mean")), num(adv.get("std")), num(adv.get("epsilon"))

    def adversarial_worst(self) -> float:
        """Accuracy under the strongest adversarial noise generator; NaN if not evaluated."""
        adv = self.adversarial_noise
        return num(adv.get("worst", min(adv.get("per_seed") or [math.nan])))

    def attack(self, name: str) -> tuple[float, float]:
        """``(accuracy %, epsilon)`` under one attack; NaNs if not evaluated."""
        result = self.attacks.get(name) or {}
        return num(result.get("accuracy")), num(result.get("epsilon"))

    def table(self) -> str:
        """The markdown tables of ``robustness.md``: summary, per corruption, corruption x severity."""
        return format_markdown(self)

    def summary(self) -> str:
        """The table the CLI prints at the end of a run."""
        return format_table([self], [self.label])

    def save(self, out_dir: str | Path) -> Path:
        """Write ``robustness.{json,csv,md}`` and the figures to ``out_dir`` (as the CLI does); returns it."""
        write_report(self, out_dir)
        return Path(out_dir)

    __repr__ = summary


def eps_directions(reports: Sequence[Report], per_seed: bool = False) -> list[str]:
    """The eps* directions of ``reports`` in display order (``adversarial_<k>``: ``per_seed`` or without summary)."""
    present = {d for r in reports for d in r.eps_star}
    if not per_seed and "adversarial" in present:
        present = {d for d in present if not _PER_GENERATOR.fullmatch(d)}
    natural = lambda d: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", d)]  # noqa: E731
    return [d for d in EPS_DIRECTIONS if d in present] + sorted(present - set(EPS_DIRECTIONS), key=natural)


def all_corruptions(reports: Sequence[Report]) -> tuple[list[str], list[str]]:
    """:meth:`Report.corruptions` over ``reports``: each name once, in first-seen order."""
    pairs = [r.corruptions() for r in reports]
    return [*dict.fromkeys(c for m, _ in pairs for c in m)], [*dict.fromkeys(c for _, h in pairs for c in h)]


def attack_names(reports: Sequence[Report]) -> list[str]:
    """The attacks evaluated in any of ``reports``, in first-seen order."""
    return list(dict.fromkeys(n for r in reports for n in r.attacks))


def summarize(accuracies: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Clean accuracy, mean corruption accuracy, per-corruption means over severities (top-1 and top-5)."""
    corrupted = {k: v for k, v in accuracies.items() if k != "clean" and v["n"] > 0}
    clean = accuracies.get("clean", {"top1": math.nan, "top5": math.nan})
    matrices = {f: accuracy_matrix(corrupted, f) for f in ("top1", "top5")}
    return {
        **{f"clean_{f}": clean[f] for f in ("top1", "top5")},
        **{f"corrupted_{f}": mean(v[f] for v in corrupted.values()) for f in ("top1", "top5")},
        "per_corruption": {c: {f: mean(matrices[f][c].values()) for f in matrices} for c in matrices["top1"]},
    }


def write_report(report: Report, out_dir: str | Path, plots: bool = True) -> Report:
    """Write ``robustness.{csv,json,md}`` and the figures (best effort: failures are logged) to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [["corruption", "severity", "top1", "top5", "n"]]
    for key, acc in report.sets.items():
        name, _, sev = key.partition("/s")
        rows.append([name, sev or 0, f"{acc['top1']:.4f}", f"{acc['top5']:.4f}", acc["n"]])
    for sigma, top1 in report.gaussian_sigmas.items():  # the sigma sweep: severity column = sigma
        rows.append(["gaussian_sigma", f"{sigma:g}", f"{top1:.4f}", "", report.sets["clean"]["n"]])
    with open(out / REPORT_CSV, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    report.to_json(out / REPORT_JSON)
    from robustnoise.report import plots as fig

    jobs = [
        ("accuracy vs severity", "severity_curves.png", partial(fig.plot_severity_curves, report)),
        ("corruption x severity", "heatmap.png", partial(fig.plot_heatmap, report)),
        ("accuracy vs sigma", "sigma_curve.png", partial(fig.plot_sigma_bands, [(report.label, [report])])),
    ]
    images = fig.draw(jobs[: 3 if report.gaussian_sigmas else 2], out, log.warning) if plots else []
    (out / REPORT_MD).write_text(format_markdown(report, images))
    return report


def format_table(reports: Sequence[Report], names: Sequence[str]) -> str:
    """The console table: clean, mean-C (as ``test_c/mean_acc``), each set (top-1 %); adversarial noise and eps*."""
    keys = list(dict.fromkeys(k for r in reports for k in r.sets if k != "clean"))
    short = {k: "".join(p[:2] for p in k.partition("/s")[0].split("_"))[:4] + k.partition("/s")[2] for k in keys}
    cell = lambda v: "  -  " if math.isnan(v) else f"{v:5.1f}"  # noqa: E731
    width = max(8, *(len(n) for n in names))
    header = f"{'method':<{width}} clean  mean-C " + " ".join(f"{short[k]:>5}" for k in keys)
    lines = [header, "-" * len(header)]
    for name, r in zip(names, reports):
        cells = " ".join(cell(r.sets.get(k, {}).get("top1", math.nan)) for k in keys)
        lines.append(f"{name:<{width}} {cell(r.metric('clean_top1'))}  {cell(r.metric('c_top1'))}  {cells}")
    if keys:
        lines += ["", "columns: " + ", ".join(sorted({f"{short[k][:-1]}=<{k.split('/')[0]}>" for k in keys}))]
        lines.append("digit = severity; accuracies are top-1 % on the test split; mean-C without holdout corruptions")
    for name, r in zip(names, reports):
        (adv, std, epsilon), worst = r.adversarial(), fmt(r.adversarial_worst())
        extra = [f"eps* {d} {_pm(*r.eps_value(d), 2)}" for d in eps_directions([r])]
        if not math.isnan(adv):
            extra.insert(0, f"adversarial noise (eps {epsilon:.2f}) {_pm(adv, std, 1)} %, worst {worst} %")
        if extra:
            lines.append(f"{name}: " + "; ".join(extra))
    return "\n".join(lines)


def fmt(value: Any, digits: int = 1) -> str:
    """A number with ``digits`` decimals, or ``–`` when missing / NaN."""
    value = num(value)
    return MISSING if math.isnan(value) else f"{value:.{digits}f}"


def _pm(centre: float, spread: float, digits: int) -> str:
    text = fmt(centre, digits)
    return text if math.isnan(centre) or math.isnan(spread) else f"{text} ± {spread:.{digits}f}"


# Seeds are the unit: a group of runs that differ only in their seed gives one interval per number.


class Interval(NamedTuple):
    """Mean of a number over a group's seeds, its interval ``[lo, hi]`` and the seed count ``n``."""

    mean: float
    lo: float
    hi: float
    n: int


def seed_interval(values: Sequence[float]) -> Interval:
    """Mean and interval of ``values`` (a seed each): min–max; from 5 seeds on, ``mean ± t(0.975, n-1) s/sqrt(n)``."""
    finite = [v for v in map(num, values) if not math.isnan(v)]
    n, centre = len(finite), mean(finite)
    if n < 5:
        return Interval(centre, min(finite, default=math.nan), max(finite, default=math.nan), n)
    from scipy.stats import t

    lo, hi = t.interval(0.95, n - 1, loc=centre, scale=statistics.stdev(finite) / math.sqrt(n))
    return Interval(centre, float(lo), float(hi), n)


def separated(a: Interval, b: Interval) -> int:
    """+1 / -1 if ``a`` lies entirely above / below ``b``; 0 if they overlap or a group has one seed (no seed noise)."""
    if a.n < 2 or b.n < 2:
        return 0
    return 1 if a.lo > b.hi else -1 if a.hi < b.lo else 0


def number_rows(reports: Sequence[Report]) -> list[tuple[str, int, Any]]:
    """The numbers that some report has (the grouped table's rows): ``(row label, decimals, number of a report)``."""
    sigmas = sorted({s for r in reports for s in r.gaussian_sigmas})
    main, holdouts = all_corruptions(reports)
    rows: list[tuple[str, int, Any]] = [
        ("clean top-1", 1, lambda r: r.metric("clean_top1")),
        ("mean corruption top-1", 1, lambda r: r.metric("c_top1")),
        *((f"gaussian sigma {s:g}", 1, lambda r, s=s: r.gaussian_sigmas.get(s, math.nan)) for s in sigmas),
        ("adv. noise top-1, mean", 1, lambda r: r.adversarial()[0]),
        ("adv. noise top-1, worst", 1, Report.adversarial_worst),
        *((f"eps* {d}", 2, lambda r, d=d: r.eps_value(d)[0]) for d in eps_directions(reports)),
        ("eps* adversarial, worst", 2, Report.eps_worst),
        *((f"{n} top-1", 1, lambda r, n=n: r.attack(n)[0]) for n in attack_names(reports)),
        *((c, 1, lambda r, c=c: r.corruption_accuracy(c)) for c in main + holdouts),
    ]
    return [row for row in rows if any(not math.isnan(num(row[2](r))) for r in reports)]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A markdown table with padded columns; ``align``: ``l``/``r`` per column (default: first left, others right)."""
    align = align or "l" + "r" * (len(header) - 1)
    widths = [max(3, len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align)) + " |"

    rule = ["-" * (w - 1) + ":" if a == "r" else "-" * w for w, a in zip(widths, align)]
    return "\n".join([line(header), "| " + " | ".join(rule) + " |", *(line(r) for r in rows)])


def _c_label(reports: Sequence[Report]) -> str:
    datas = {str(r.data or "").lower() for r in reports}
    data = datas.pop() if len(datas) == 1 else ""  # the benchmark's short name only when every run shares the data
    labels = {"tiny": "TIN-C", "imagenet": "IN-C", "cifar100": "C100-C", "cifar10": "C10-C", "mnist": "MNIST-C"}
    return next((label for key, label in labels.items() if key in data), "-C")


def summary_columns(reports: Sequence[Report]) -> list[tuple[str, Callable[[Report], str]]]:
    """The summary columns that apply to ``reports``: ``(header, cell of a report)``."""

    def has(key: str) -> bool:
        return any(not math.isnan(num(r.metrics.get(key))) for r in reports)

    c = _c_label(reports)
    keys = [(f"{h} top-{n}", f"{k}_top{n}") for h, k in (("clean", "clean"), (c, "c")) for n in (1, 5)]
    if has("no_noise_top1"):
        keys += [("w/o noises top-1", "no_noise_top1"), ("w/o noises top-5", "no_noise_top5")]
    if any("mce" in r.metrics for r in reports):  # ImageNet-C's mCE shows even when incomplete (as "–")
        keys += [("mCE", "mce"), ("rel. mCE", "relative_mce")]
    elif has("unnormalized_mce"):
        keys.append(("unnorm. mCE", "unnormalized_mce"))
    if has("holdout_top1"):
        keys.append(("holdout top-1", "holdout_top1"))
    cols = [(h, lambda r, k=k: fmt(r.metric(k))) for h, k in keys]
    cols += [(f"eps* {d}", lambda r, d=d: _pm(*r.eps_value(d), 2)) for d in eps_directions(reports)]
    if any(not math.isnan(r.adversarial()[0]) for r in reports):
        cols.append(("adv. noise top-1", lambda r: _pm(*r.adversarial()[:2], 1)))
        cols.append(("adv. noise worst", lambda r: fmt(r.adversarial_worst())))
    return cols + [(f"{n} top-1", lambda r, n=n: fmt(r.attack(n)[0])) for n in attack_names(reports)]


def summary_table(reports: Sequence[Report], names: Sequence[str], first: tuple[str, Sequence] | None = None) -> str:
    """The papers' summary table, a row per report; ``first``: a ``(header, cells)`` column shown first (the sweep)."""
    cols = summary_columns(reports)
    header = ([first[0]] if first else []) + ["run"] + [h for h, _ in cols]
    rows = [
        ([str(first[1][i])] if first else []) + [name] + [cell(r) for _, cell in cols]
        for i, (name, r) in enumerate(zip(names, reports))
    ]
    return markdown_table(header, rows, ("r" if first else "") + "l" + "r" * len(cols))


_NOTES = {  # the summary's notes, by the column they explain
    "w/o noises": "w/o noises: mean over the 12 benchmark corruptions other than gaussian / shot / impulse noise.",
    "mCE": "mCE / rel. mCE: corruption errors normalised by AlexNet's (Hendrycks & Dietterich 2019), %.",
    "unnorm. mCE": "unnorm. mCE: mean top-1 error over the benchmark corruptions and severities, %.",
    "eps*": "eps*: the smallest l2 noise norm that flips the prediction, per direction: median over the test images "
    "(adversarial: mean ± std of those medians over the generators' seeds).",
}


def summary_notes(reports: Sequence[Report]) -> list[str]:
    c, headers = _c_label(reports), [h for h, _ in summary_columns(reports)]
    notes = [
        f"Top-1 / top-5 accuracy in % on the test split. {c}: mean over the benchmark corruptions evaluated and "
        "their severities (holdout corruptions apart)."
    ]
    notes += [note for key, note in _NOTES.items() if any(h.startswith(f"{key} ") or h == key for h in headers)]
    eps = _epsilons(r.adversarial()[2] for r in reports)
    if eps:
        notes.append(
            "adv. noise: accuracy under freshly trained adversarial noise generators, mean ± std over the generators' "
            f"seeds, and under the strongest generator (worst; eps = {eps})."
        )
    if attack_names(reports):
        shown = [f"{n} at eps = {_epsilons(r.attack(n)[1] for r in reports)}" for n in attack_names(reports)]
        notes.append(f"attacks: accuracy under {'; '.join(shown)}.")
    return notes + [f"{MISSING}: not evaluated, or the benchmark is incomplete."]


def _epsilons(values: Iterable[float]) -> str:
    return ", ".join(f"{e:g}" for e in sorted({v for v in values if not math.isnan(v)}))


def corruption_table(report: Report) -> str:
    """Per corruption: top-1 / top-5 averaged over the severities and the CE where available (markdown)."""
    main, holdouts = report.corruptions()
    normalized = "mce" in report.metrics

    def row(name: str, label: str) -> list[str]:
        acc, acc5 = report.corruption_accuracy(name), report.corruption_accuracy(name, "top5")
        ce = report.metrics.get(f"{name}/ce", math.nan)
        if math.isnan(ce) and not normalized:
            ce = 100.0 - acc
        return [label, fmt(acc), fmt(acc5), fmt(ce)]

    def with_mean(label: str, rows: list[list[str]]) -> list[list[str]]:  # the mean of the rounded cells
        return rows + ([[label] + [fmt(mean(r[i] for r in rows)) for i in (1, 2, 3)]] if len(rows) > 1 else [])

    rows = with_mean("**mean**", [row(n, n) for n in main])
    rows += with_mean("**holdout mean**", [row(n, f"{n} (holdout)") for n in holdouts])
    return markdown_table(["corruption", "top-1", "top-5", "CE" if normalized else "error"], rows)


def severity_grid(report: Report) -> tuple[list[str], list[str], list[list[float]]]:
    """Corruption x severity top-1 (NaN: not evaluated) as row labels, column labels and values, with the ``mean``
    over the benchmark corruptions (a row before the holdouts, if more than one) and over the severities (a column)."""
    matrix, (main, holdouts) = report.matrix(), report.corruptions()
    severities = sorted({s for row in matrix.values() for s in row})
    rows = {name: [matrix[name].get(s, math.nan) for s in severities] for name in main}
    if len(main) > 1:
        rows["mean"] = [mean(matrix[c].get(s) for c in main) for s in severities]
    rows |= {f"{name} (holdout)": [matrix[name].get(s, math.nan) for s in severities] for name in holdouts}
    one_level = report.benchmark is Benchmark.MNIST_C  # MNIST-C's sets have no severities (Mu & Gilmer 2019)
    columns = ["one level" if one_level and s == 1 else f"s{s}" for s in severities] + ["mean"]
    return list(rows), columns, [[*row, mean(row)] for row in rows.values()]


def severity_table(report: Report) -> str:
    """Corruption x severity top-1 (markdown), with the mean per corruption and per severity."""
    labels, columns, values = severity_grid(report)
    rows = [["**mean**" if label == "mean" else label, *map(fmt, row)] for label, row in zip(labels, values)]
    return markdown_table(["corruption", *columns], rows)


def _stat(value: Any, real: bool) -> str:
    """eps* statistics: norms with 3 decimals (``inf``: never flipped), counts as integers."""
    value = num(value)
    return str(int(value)) if not real and not math.isnan(value) and value.is_integer() else fmt(value, 3)


def format_markdown(report: Report, images: Sequence[tuple[str, str]] = ()) -> str:
    """``robustness.md``: the summary, per-corruption, corruption x severity, sigma sweep and eps* tables, figures."""
    name, clean_n = report.label, num(report.sets.get("clean", {}).get("n"))
    described = ", ".join(f"{k} `{v}`" for k in ("method", "model", "data") if (v := getattr(report, k)) is not None)
    lines = [f"# Robustness report: {name}", ""]
    if described or not math.isnan(clean_n):
        images_n = "" if math.isnan(clean_n) else f"; {int(clean_n)} test images"
        preset = f"; corruption preset `{report.preset}`" if report.preset else ""
        lines += [f"{described or 'run'}{images_n}{preset}.", ""]
    lines += ["## Summary", "", summary_table([report], [name]), ""]
    lines += [f"- {note}" for note in summary_notes([report])] + [""]
    if report.corruptions() != ([], []):
        error = "CE: AlexNet-normalised corruption error" if "mce" in report.metrics else "error: top-1 error"
        lines += ["## Per corruption", "", f"Accuracies averaged over the severities evaluated; {error} (%).", ""]
        lines += [corruption_table(report), "", "## Corruption x severity (top-1 %)", ""]
        lines += [f"Clean: {fmt(report.metric('clean_top1'))}.", "", severity_table(report), ""]
    adv, _, adv_eps = report.adversarial()
    per_seed = report.adversarial_noise.get("per_seed") if not math.isnan(adv) else None
    if per_seed:
        lines += ["## Adversarial noise", ""]
        lines += [f"eps = {fmt(adv_eps, 3)}; accuracy per seed: {', '.join(fmt(v, 2) for v in per_seed)}.", ""]
    sigmas = report.gaussian_sigmas
    if sigmas:
        lines += ["## Gaussian noise clip(x + sigma n) (top-1 %)", ""]
        lines += [markdown_table(["sigma", *(f"{s:g}" for s in sigmas)], [["top-1", *map(fmt, sigmas.values())]]), ""]
    eps = report.eps_star
    if eps:
        scalars = {k for v in eps.values() for k, x in v.items() if not isinstance(x, (list, dict))}
        first = ("median", "mean", "std")
        stats = sorted(scalars, key=lambda k: (first.index(k) if k in first else len(first), k))
        rows = [[d] + [_stat(eps[d].get(k), k in first) for k in stats] for d in eps_directions([report], True)]
        lines += ["## eps* (smallest l2 noise norm that flips the prediction)", ""]
        lines += [markdown_table(["direction", *stats], rows), ""]
    if images:
        lines += ["## Figures", "", *(f"![{caption}]({file})" for caption, file in images), ""]
    return "\n".join(lines)
