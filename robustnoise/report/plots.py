"""PNG figures of reports (Rusak et al. 2020, Fig. 2's sigma axis) and of training; no pyplot state."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from robustnoise.metrics import mean, num
from robustnoise.report.reporting import Report, number_rows, seed_interval, severity_grid

MIN_SPAN = 10.0  # accuracy axes span at least this many points: a one-image difference does not fill a figure


def save_figure(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def draw(jobs: Sequence[tuple[str, str, Callable[[Path], Any]]], out: Path, warn: Callable[[str], Any]) -> list:
    """Draw each ``(caption, file, draw(path))`` into ``out`` (failures to ``warn``); returns the written ones."""
    written = []
    for caption, name, job in jobs:
        try:
            job(out / name)
            written.append((caption, name))
        except Exception as err:
            warn(f"could not draw {out / name}: {err}")
    return written


def _finish(ax: Any, path: str | Path, title: str, xlabel: str = "", values: Sequence[float] | None = None) -> Path:
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_xlabel(xlabel)
    if values is not None:
        ax.set_ylim(*_limits(values))
    ax.grid(axis="both" if xlabel else "y", alpha=0.3)  # bars (no x label): horizontal lines only
    ax.set_title(title, fontsize=11)
    return save_figure(ax.figure, path)


def _limits(values: Sequence[float]) -> tuple[float, float]:
    """Accuracy axis limits: the data range with a margin, at least :data:`MIN_SPAN` wide, inside [0, 101]."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return 0.0, 100.0
    lo, hi = min(finite), max(finite)
    pad = max(2.0, 0.08 * (hi - lo), (MIN_SPAN - (hi - lo)) / 2)
    lo, hi = max(0.0, lo - pad), min(101.0, hi + pad)
    if hi - lo < MIN_SPAN:  # pushed against 0 or 100: widen on the other side
        lo, hi = (lo, min(101.0, lo + MIN_SPAN)) if lo <= 0.0 else (max(0.0, hi - MIN_SPAN), hi)
    return lo, hi


def _colours(n: int) -> list[Any]:
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _title(report: Report, what: str) -> str:
    sub = ", ".join(f"{k} {v}" for k in ("method", "model", "data") if (v := getattr(report, k)))
    return f"{report.label}: {what}" + (f"\n({sub})" if sub else "")


def _data(reports: Sequence[Report]) -> str:
    data = sorted({str(r.data) for r in reports if r.data is not None})
    return f" ({', '.join(data)})" if data else ""


def _clean_line(ax: Any, report: Report) -> list[float]:
    clean = report.metric("clean_top1")
    if math.isnan(clean):
        return []
    ax.axhline(clean, ls="--", color="0.45", lw=1.5, label=f"clean ({clean:.1f})", zorder=4)
    return [clean]


def plot_severity_curves(report: Report, path: str | Path) -> Path:
    """Top-1 against severity per corruption, their mean and clean; bars for a single severity (MNIST-C)."""
    matrix, (main, holdouts) = report.matrix(), report.corruptions()
    labels = main + [f"{n} (holdout)" for n in holdouts]
    severities = sorted({s for r in matrix.values() for s in r})
    if len(severities) == 1:  # the bars of the corruption x severity table
        names, columns, grid = severity_grid(report)
        rows = [(name, lambda r, value=row[0]: value) for name, row in zip(names, grid)]
        ax = Figure(figsize=(max(6.0, 0.45 * len(rows) + 2.5), 4.8)).add_subplot()
        _grouped_bars(ax, rows, [(report.label, [report])], 1)
        _clean_line(ax, report)
        ax.legend(loc="lower right", fontsize=8)
        ax.set_ylim(0, 101)  # bars start at zero
        level = "one level" if columns[0] == "one level" else f"severity {severities[0]}"
        return _finish(ax, path, _title(report, f"accuracy per corruption ({level})"))
    ax = Figure(figsize=(8.0, 4.8)).add_subplot()
    values: list[float] = []
    for name, label, colour in zip(main + holdouts, labels, _colours(len(labels))):
        xs, ys = zip(*matrix[name].items())
        values += ys
        style = "--" if name in holdouts else "-"
        ax.plot(xs, ys, style, marker="o", markersize=3.5, lw=1.3, color=colour, label=label)
    if main:
        means = [mean(matrix[c].get(s) for c in main) for s in severities]
        values += means
        label = "mean (w/o holdouts)" if holdouts else "mean"
        ax.plot(severities, means, "-", marker="s", lw=3.0, color="black", label=label, zorder=5)
    values += _clean_line(ax, report)
    ax.set_xticks(severities or [1, 2, 3, 4, 5])
    if not labels:
        ax.text(0.5, 0.5, "no corruption evaluated", ha="center", va="center", transform=ax.transAxes)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return _finish(ax, path, _title(report, "accuracy vs severity"), "severity", values)


def plot_heatmap(report: Report, path: str | Path) -> Path:
    """The corruption x severity table of ``robustness.md`` on a 0..100 colour scale (runs compare by colour)."""
    labels, columns, values = severity_grid(report)
    data = np.array(values).reshape(len(labels), len(columns))
    if len(columns) == 2:  # a single severity: no mean column repeating it
        data, columns = data[:, :1], columns[:1]
    fig = Figure(figsize=(1.1 * len(columns) + 3.2, 0.42 * max(len(labels), 2) + 1.7))
    ax = fig.add_subplot()
    if np.isfinite(data).any():
        cmap = colormaps["viridis"].with_extremes(bad="0.85")
        image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=0.0, vmax=100.0, aspect="auto")
        fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02).set_label("top-1 accuracy (%)")
        for (i, j), value in np.ndenumerate(data):  # white on the dark end of the 0..100 scale
            text, colour = ("–", "0.3") if math.isnan(value) else (f"{value:.1f}", "white" if value < 60 else "black")
            weight = "bold" if "mean" in (labels[i], columns[j]) else "normal"
            ax.text(j, i, text, ha="center", va="center", fontsize=9, color=colour, fontweight=weight)
        if "mean" in labels:
            ax.hlines([labels.index("mean") - 0.5, labels.index("mean") + 0.5], -0.5, len(columns) - 0.5, "white", lw=2)
        if columns[-1] == "mean":
            ax.axvline(len(columns) - 1.5, color="white", lw=2)
    else:
        ax.text(0.5, 0.5, "no corruption evaluated", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("severity")
    clean = report.metric("clean_top1")
    clean_text = f", clean {clean:.1f}" if not math.isnan(clean) else ""
    ax.set_title(_title(report, f"top-1 accuracy (%) per corruption and severity{clean_text}"), fontsize=11)
    return save_figure(fig, path)


def _grouped_bars(ax: Any, rows: list[tuple[str, Any]], groups: Sequence[tuple[str, Sequence]], digits: int) -> list:
    """A cluster per row, a bar per group: mean over seeds, interval as error bar. Returns the interval ends."""
    width = 0.8 / max(len(groups), 1)
    x = np.arange(len(rows))
    ends: list[float] = []
    for k, ((label, reports), colour) in enumerate(zip(groups, _colours(len(groups)))):
        intervals = [seed_interval([value(r) for r in reports]) for _, value in rows]
        means = np.array([i.mean for i in intervals])
        err = np.array([[i.mean - i.lo, i.hi - i.mean] if i.n > 1 else [np.nan, np.nan] for i in intervals]).T
        offset = (k - (len(groups) - 1) / 2) * width
        bars = ax.bar(x + offset, means, width, yerr=err, capsize=3, color=colour, label=f"{label} (n={len(reports)})")
        ax.bar_label(bars, [f"{m:.{digits}f}" if math.isfinite(m) else "" for m in means], fontsize=7, padding=2)
        ends += [v for i in intervals for v in (i.lo, i.hi)]
    ax.set_xticks(x, [name for name, _ in rows], rotation=20, ha="right", rotation_mode="anchor", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return ends


def plot_groups(groups: Sequence[tuple[str, Sequence[Report]]], path: str | Path) -> Path:
    """Groups ``(label, reports of its seeds)``: accuracies on a 0-100 panel, eps* on another; seed intervals."""
    everyone = [r for _, reports in groups for r in reports]
    rows = [(name.replace(" top-1", ""), digits, value) for name, digits, value in number_rows(everyone)]
    shown = ("clean", "mean corruption", "adv. noise, mean", "adv. noise, worst")
    accuracy = [(name, value) for name, _, value in rows if name in shown]
    eps = [(name, value) for name, digits, value in rows if digits == 2]
    fig = Figure(figsize=(max(7.0, 1.0 * (len(accuracy) + len(eps)) * max(1, len(groups)) ** 0.5 + 4.0), 4.8))
    panels = [(accuracy, 1, "top-1 accuracy (%)", "accuracy")]
    panels += [(eps, 2, "eps* (median l2 norm)", "noise needed to flip (eps*)")] if eps else []
    axes = fig.subplots(1, len(panels), squeeze=False, width_ratios=[max(len(p[0]), 1) for p in panels])[0]
    for ax, (rows, digits, ylabel, title) in zip(axes, panels):
        ends = [v for v in _grouped_bars(ax, rows, groups, digits) if not math.isnan(v)]
        ax.set(ylim=(0, 101) if digits == 1 else (0, 1.15 * max(ends, default=1.0) or 1.0), ylabel=ylabel)  # from 0
        ax.set_title(title, fontsize=10)
    if not accuracy and not eps:
        axes[0].text(0.5, 0.5, "no numbers in these reports", ha="center", va="center", transform=axes[0].transAxes)
    handles = axes[0].get_legend_handles_labels()
    fig.legend(
        *handles, loc="lower center", ncol=min(len(groups), 3), fontsize=9, bbox_to_anchor=(0.5, 1), frameon=False
    )
    title = f"comparison: mean over seeds, error bar = seed interval{_data(everyone)}"
    fig.suptitle(title, y=1.12 + 0.05 * ((len(groups) - 1) // 3), fontsize=11)
    return save_figure(fig, path)


def _bands(curves: list[tuple[str, list, list, dict]], path: str | Path, title: str, xlabel: str, **ticks: Any) -> Path:
    """Curves ``(label, xs, values per x (a seed each), style)``: the mean over seeds and their interval as a band."""
    ax = Figure(figsize=(7.0, 4.6)).add_subplot()
    values: list[float] = []
    for label, xs, per_x, style in curves:
        intervals = [seed_interval(v) for v in per_x]
        (line,) = ax.plot(xs, [i.mean for i in intervals], lw=2, label=label, **style)
        if any(i.n > 1 for i in intervals):
            ax.fill_between(xs, [i.lo for i in intervals], [i.hi for i in intervals], color=line.get_color(), alpha=0.2)
        values += [v for i in intervals for v in (i.lo, i.hi)]
    if values:
        ax.legend(fontsize=9, loc="best")
    else:
        ax.text(0.5, 0.5, "no accuracies in these reports", ha="center", va="center", transform=ax.transAxes)
    if ticks:
        ax.set_xticks(**ticks)
    return _finish(ax, path, title, xlabel, values)


def plot_sweep(reports: Sequence[Report], xs: Sequence[Any], path: str | Path, xlabel: str = "sigma") -> Path:
    """Top-1 against a swept value (Rusak et al. 2020, Fig. 2); seeds at one x give a band; non-numeric xs evenly."""
    if len(reports) != len(xs):
        raise ValueError(f"plot_sweep: {len(reports)} reports but {len(xs)} x values")
    numeric = not any(math.isnan(num(x)) for x in xs)
    at: dict[str, tuple[Any, list[Report]]] = {}  # the runs at each x, in the order of x if numeric
    for x, report in sorted(zip(xs, reports), key=lambda p: num(p[0])) if numeric else zip(xs, reports):
        at.setdefault(str(x), (x, []))[1].append(report)
    ticks = [num(x) if numeric else i for i, (x, _) in enumerate(at.values())]
    series = [
        ("clean", lambda r: r.metric("clean_top1"), {"color": "tab:blue", "marker": "o"}),
        ("mean corruption", lambda r: r.metric("c_top1"), {"color": "tab:red", "marker": "s"}),
        ("w/o noises", lambda r: r.metric("no_noise_top1"), {"color": "tab:green", "marker": "^", "linestyle": "--"}),
        ("adv. noise", lambda r: r.adversarial()[0], {"color": "tab:purple", "marker": "D", "linestyle": ":"}),
    ]
    curves = []
    for label, value, style in series:
        per_x = [[value(r) for r in group] for _, group in at.values()]
        if any(not math.isnan(v) for vs in per_x for v in vs):
            curves.append((label, ticks, per_x, {**style, "markersize": 6}))
    runs = sorted({r.label for r in reports})
    title = ", ".join(runs[:3]) + (", ..." if len(runs) > 3 else "") + f": accuracy vs {xlabel}{_data(reports)}"
    labels = [str(x) for x, _ in at.values()]
    return _bands(curves, path, title, xlabel, ticks=ticks, labels=labels, rotation=0 if numeric else 30)


def plot_sigma_bands(groups: Sequence[tuple[str, Sequence[Report]]], path: str | Path) -> Path:
    """Top-1 under ``clip(x + sigma n)`` against sigma (Rusak et al. 2020, Fig. 2), a band per group."""
    curves = []
    for (label, reports), colour in zip(groups, _colours(len(groups))):
        sigmas = sorted({s for r in reports for s in r.gaussian_sigmas})
        per_x = [[r.gaussian_sigmas.get(s, math.nan) for r in reports] for s in sigmas]
        curves.append((f"{label} (n={len(reports)})", sigmas, per_x, {"color": colour, "marker": "o", "markersize": 4}))
    title = f"accuracy under clip(x + sigma n): mean and seed interval{_data([r for _, rs in groups for r in rs])}"
    return _bands(curves, path, title, "sigma of the Gaussian noise")


def plot_training_curves(metrics_csv: Sequence[str | Path], path: str | Path) -> Path | None:
    """Validation top-1 against epoch from ``metrics.csv`` files (in order); None without validation rows."""
    rows = [r for file in metrics_csv for r in csv.DictReader(Path(file).read_text().splitlines()) if r.get("epoch")]
    per_corruption = sorted({k for r in rows for k in r if k.startswith("val_c/") and k.endswith("/acc")})
    keys = ["val/acc", "val_c/mean_acc", *per_corruption]
    points = {k: sorted({int(r["epoch"]) + 1: float(r[k]) for r in rows if r.get(k)}.items()) for k in keys}
    curves = {k: c for k, c in points.items() if c}
    if not curves:
        return None
    ax = Figure(figsize=(7.0, 4.5)).add_subplot()
    others = [k for k in curves if k not in ("val/acc", "val_c/mean_acc")]
    for key, colour in zip(others, _colours(len(others))):
        ax.plot(*zip(*curves[key]), color=colour, lw=1, alpha=0.7, label=key[len("val_c/") : -4])
    for key, style, label in (("val/acc", "-", "clean"), ("val_c/mean_acc", "--", "corrupted (mean)")):
        if key in curves:
            ax.plot(*zip(*curves[key]), "k" + style, lw=2.5, marker="o", markersize=4, label=label)
    ax.legend(fontsize=8, loc="best")
    values = [v for c in curves.values() for _, v in c]
    return _finish(ax, path, "validation accuracy during training: clean and corrupted subset", "epoch", values)


def log_image_file(module: Any, key: str, path: Path) -> None:
    """Send a saved figure to every logger of a LightningModule that takes images (W&B)."""
    for logger in module.loggers:
        if hasattr(logger, "log_image"):
            logger.log_image(key=key, images=[str(path)], step=module.global_step)


def image_rows(rows: Sequence[tuple[str, Any]], title: str, columns: int = 16) -> Figure:
    """Images in [0, 1] as labelled rows ``(label, N x C x H x W)``, up to ``columns`` a row."""
    rows = [(label, images) for label, images in rows if len(images)]
    n = min(columns, max((len(images) for _, images in rows), default=1))
    cell = max(0.45, 7.5 / n)
    fig = Figure(figsize=(1.4 + cell * n, 0.5 + cell * max(len(rows), 1)))
    axes = fig.subplots(max(len(rows), 1), n, squeeze=False, gridspec_kw={"wspace": 0.05, "hspace": 0.1})
    for ax in axes.flat:
        ax.set(xticks=[], yticks=[])
        ax.spines[:].set_visible(False)
    for r, (label, images) in enumerate(rows):
        for ax, image in zip(axes[r], images[:n].detach().float().cpu().clamp(0, 1).permute(0, 2, 3, 1).numpy()):
            ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title, fontsize=11)
    return fig


def noise_histogram(values: Any, epsilon: float, title: str) -> Figure:
    """Per-channel histograms of per-pixel noise (Rusak et al. 2020, Fig. 3A), with a Gaussian of the same l2 norm."""
    values = values.detach().float().cpu()
    ax = Figure(figsize=(6.4, 4.0)).add_subplot()
    colours = ["tab:red", "tab:green", "tab:blue"] if values.shape[1] == 3 else ["black"] * values.shape[1]
    for c in range(values.shape[1]):
        label = f"channel {c}" if values.shape[1] > 1 else "generator noise"
        ax.hist(values[:, c].flatten().numpy(), bins=101, histtype="step", color=colours[c], density=True, label=label)
    if math.isfinite(epsilon):
        std = epsilon / math.sqrt(values[0].numel())
        lo, hi = ax.get_xlim()
        xs = np.linspace(min(lo, -4 * std), max(hi, 4 * std), 400)
        density = np.exp(-0.5 * (xs / std) ** 2) / (std * math.sqrt(2 * math.pi))
        ax.plot(xs, density, "--", color="tab:orange", lw=1.5, label=f"Gaussian, same l2 norm (std {std:.3g})")
    ax.set(xlabel="noise value per pixel (before clipping)", ylabel="density")
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=8)
    return ax.figure
