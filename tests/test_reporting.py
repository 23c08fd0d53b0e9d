"""Robustness reports: markdown tables, figures and the comparison CLI, on synthetic reports with known numbers."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from robustnoise.corruptions.presets import BENCHMARK_CORRUPTIONS, HOLDOUT_CORRUPTIONS
from robustnoise.metrics import Benchmark, robustness_summary
from robustnoise.report import compare, plots
from robustnoise.report.reporting import Report, format_markdown, summarize, write_report

ALL = BENCHMARK_CORRUPTIONS + HOLDOUT_CORRUPTIONS


def accuracies(clean: float, drop: float, names=ALL, severities=(1, 2, 3, 4, 5)) -> dict:
    """Known numbers: corruption i at severity s has top-1 ``clean - drop * s - i`` and top-5 ``top1 + 3``."""
    out = {"clean": {"top1": clean, "top5": min(100.0, clean + 3), "n": 100}}
    for i, name in enumerate(names):
        for s in severities:
            top1 = clean - drop * s - i
            out[f"{name}/s{s}"] = {"top1": top1, "top5": top1 + 3, "n": 100}
    return out


def imagenet_meta(acc: dict, run_name: str = "ant", **extra) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = robustness_summary(acc, benchmark="imagenet")
    return {"method": run_name, "run_name": run_name, "model": "resnet50", "data": "ImageNet-C", "metrics": metrics}


def make_run(root: Path, name: str, acc: dict, meta: dict, sigma: float | None = None, plots_: bool = False) -> Path:
    run = root / name
    write_report(Report.from_dict({**meta, "sets": acc}), run, plots=plots_)
    (run / ".hydra").mkdir(parents=True, exist_ok=True)
    method = f"  name: {meta['method']}\n" + (f"  sigma: {sigma}\n" if sigma is not None else "")
    (run / ".hydra" / "config.yaml").write_text(f"run_name: ${{method.name}}\nmethod:\n{method}seed: 1\n")
    return run


def table_rows(markdown: str, first_cell: str) -> list[list[str]]:
    """Cells of the markdown table rows whose first cell is ``first_cell``."""
    rows = []
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            rows.append(cells)
    return rows


def header_of(markdown: str, first_cell: str) -> list[str]:
    return table_rows(markdown, first_cell)[0]


# ------------------------------------------------------------------------------------------------- markdown report


def test_markdown_report_numbers(tmp_path):
    acc = accuracies(80.0, 5.0)
    meta = imagenet_meta(acc)
    meta["benchmark"] = "imagenet"
    meta["eps_star"] = {  # the shape of CorruptionSuite.adversarial_results()
        "gaussian": {"median": 12.5, "n": 100, "never_flipped": 2, "already_wrong": 20, "passes_per_image": 7.25},
        "uniform": {"median": 10.25, "n": 100, "never_flipped": 0, "already_wrong": 20},
        "adversarial_0": {"median": 3.25, "n": 100},
        "adversarial_1": {"median": 3.75, "n": 100},
        "adversarial": {"per_seed": [3.25, 3.75], "mean": 3.5, "std": 0.25},
    }
    meta["adversarial_noise"] = {"epsilon": 80.0, "mean": 42.0, "std": 1.5, "per_seed": [40.5, 43.5]}
    meta["attacks"] = {"l2_ddn": {"epsilon": 0.5, "accuracy": 12.5, "n": 100}}
    report = write_report(Report.from_dict({**meta, "sets": acc}), tmp_path, plots=False)
    md = (tmp_path / "robustness.md").read_text()
    assert md.startswith("# Robustness report: ant")

    header, row = header_of(md, "run"), table_rows(md, "ant")[0]
    summary = dict(zip(header, row))
    metrics = meta["metrics"]
    assert summary["clean top-1"] == "80.0" and summary["clean top-5"] == "83.0"
    # benchmark corruptions i = 0..14, mean severity 3: 80 - 15 - 7 = 58
    assert summary["IN-C top-1"] == "58.0" and summary["IN-C top-5"] == "61.0"
    # w/o noises: i = 3..14 -> 80 - 15 - 8.5
    assert summary["w/o noises top-1"] == "56.5" and summary["w/o noises top-5"] == "59.5"
    assert summary["mCE"] == f"{metrics['mce']:.1f}" and summary["rel. mCE"] == f"{metrics['relative_mce']:.1f}"
    assert summary["holdout top-1"] == f"{80 - 15 - 16.5:.1f}"
    assert summary["eps* gaussian"] == "12.50" and summary["eps* uniform"] == "10.25"
    assert summary["eps* adversarial"] == "3.50 ± 0.25"
    assert summary["adv. noise top-1"] == "42.0 ± 1.5"
    assert summary["l2_ddn top-1"] == "12.5" and "l2_ddn at eps = 0.5" in md
    assert not any("adversarial_0" in k for k in summary)  # per-generator eps* only in the eps* section
    assert table_rows(md, "gaussian")[0][:3] == ["gaussian", "12.500", "–"]  # median, mean
    assert table_rows(md, "adversarial")[0][:4] == ["adversarial", "–", "3.500", "0.250"]
    assert table_rows(md, "adversarial_1")[0][1] == "3.750"
    eps_header = table_rows(md, "direction")[0]
    assert eps_header[:4] == ["direction", "median", "mean", "std"]
    assert dict(zip(eps_header, table_rows(md, "gaussian")[0]))["never_flipped"] == "2"
    assert "unnorm. mCE" not in summary  # ImageNet: the normalised numbers

    # per corruption: mean over severities, top-5, AlexNet-normalised CE; holdouts after the mean row
    assert table_rows(md, "gaussian_noise")[0] == [
        "gaussian_noise",
        "65.0",
        "68.0",
        f"{metrics['gaussian_noise/ce']:.1f}",
    ]
    assert table_rows(md, "jpeg_compression")[0][:3] == ["jpeg_compression", "51.0", "54.0"]
    assert table_rows(md, "**mean**")[0][:2] == ["**mean**", "58.0"]
    assert table_rows(md, "**mean**")[0][3] == f"{metrics['mce']:.1f}"
    saturate = table_rows(md, "saturate (holdout)")
    assert saturate[0][:3] == ["saturate (holdout)", "47.0", "50.0"]
    lines = md.splitlines()
    assert lines.index(next(line for line in lines if line.startswith("| **mean**"))) < lines.index(
        next(line for line in lines if line.startswith("| saturate (holdout)"))
    )
    # corruption x severity: s1..s5 and the mean
    assert table_rows(md, "corruption")[1][-6:] == ["s1", "s2", "s3", "s4", "s5", "mean"]
    sev_row = table_rows(md, "shot_noise")[1]
    assert sev_row == ["shot_noise", "74.0", "69.0", "64.0", "59.0", "54.0", "64.0"]
    assert table_rows(md, "**mean**")[1] == ["**mean**", "68.0", "63.0", "58.0", "53.0", "48.0", "58.0"]
    assert "40.50, 43.50" in md  # adversarial noise per seed
    # JSON and CSV keep their format
    written = json.loads((tmp_path / "robustness.json").read_text())
    assert json.loads(json.dumps(Report.load(tmp_path).to_dict())) == written  # read back unchanged
    assert written == json.loads(json.dumps(report.to_dict()))
    csv_rows = (tmp_path / "robustness.csv").read_text().splitlines()
    assert csv_rows[0] == "corruption,severity,top1,top5,n" and csv_rows[1] == "clean,0,80.0000,83.0000,100"
    assert "gaussian_noise,2,70.0000,73.0000,100" in csv_rows


def test_markdown_without_metrics_or_optional_keys(tmp_path):
    """Old reports (no metrics, eps*, adversarial noise), partial benchmarks: tables still render, gaps are '–'."""
    acc = accuracies(90.0, 2.0, names=("gaussian_noise", "speckle_noise"), severities=(1, 3))
    acc["shot_noise/s1"] = {"top1": float("nan"), "top5": float("nan"), "n": 0}
    write_report(
        Report.from_dict({"method": "vanilla", "run_name": "base", "data": "digits", "sets": acc}),
        tmp_path,
        plots=False,
    )
    md = (tmp_path / "robustness.md").read_text()
    summary = dict(zip(header_of(md, "run"), table_rows(md, "base")[0]))
    assert summary["clean top-1"] == "90.0" and summary["-C top-1"] == "86.0"  # gaussian only (speckle: holdout)
    assert not any(k.startswith(("eps*", "adv.", "mCE", "w/o")) for k in summary)
    sev_header = table_rows(md, "corruption")[1]
    assert sev_header[-3:] == ["s1", "s3", "mean"]
    assert table_rows(md, "gaussian_noise")[1] == ["gaussian_noise", "88.0", "84.0", "86.0"]
    assert table_rows(md, "speckle_noise (holdout)")[0][:2] == ["speckle_noise (holdout)", "85.0"]
    assert "## Figures" not in md

    bare = {"run_name": "empty", "sets": {}, "clean_top1": None}
    text = format_markdown(Report.from_dict(bare))
    assert "| empty |" in text and "–" in text
    assert "# Robustness report: run" in format_markdown(Report())


# ------------------------------------------------------------------------------------------------------- figures


def _pixels(path: Path) -> np.ndarray:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return imread(path)


def _differ(a: Path, b: Path) -> bool:
    x, y = _pixels(a), _pixels(b)
    return x.shape != y.shape or not np.array_equal(x, y)


def test_plots_depend_on_the_data(tmp_path):
    acc_a, acc_b = accuracies(80.0, 5.0), accuracies(70.0, 8.0, names=ALL[:6], severities=(1, 2, 3))
    noise = {"epsilon": 1.0, "mean": 40.0, "std": 2.0}
    a = Report.from_dict({**imagenet_meta(acc_a, "ant"), "sets": acc_a, "adversarial_noise": noise})
    b = Report.from_dict({"run_name": "vanilla", "data": "ImageNet", **summarize(acc_b), "sets": acc_b})
    for fn in (plots.plot_severity_curves, plots.plot_heatmap):
        pa, pb = fn(a, tmp_path / f"{fn.__name__}_a.png"), fn(b, tmp_path / f"{fn.__name__}_b.png")
        assert _differ(pa, pb), fn.__name__
    s1 = plots.plot_sweep([a, b], [0.5, 0.1], tmp_path / "sweep1.png")
    s2 = plots.plot_sweep([a, b], [0.1, 0.5], tmp_path / "sweep2.png")
    s3 = plots.plot_sweep([a, b], [[0.1, 0.2], "x"], tmp_path / "sweep3.png", xlabel="sigmas")
    assert _differ(s1, s2) and _differ(s1, s3)
    with pytest.raises(ValueError):
        plots.plot_sweep([a], [1, 2], tmp_path / "bad.png")


def test_plots_of_empty_reports(tmp_path):
    for fn in (plots.plot_severity_curves, plots.plot_heatmap):
        _pixels(fn(Report(run_name="nothing"), tmp_path / f"{fn.__name__}.png"))
    _pixels(plots.plot_sweep([Report()], [1.0], tmp_path / "sweep.png"))


def test_write_report_figures_and_failures(tmp_path, monkeypatch, caplog):
    acc = accuracies(75.0, 3.0, ALL[:4])
    run = make_run(tmp_path, "gnt", acc, {"method": "gnt", "run_name": "gnt"}, plots_=True)
    for name in ("severity_curves.png", "heatmap.png"):
        _pixels(run / name)
        assert f"]({name})" in (run / "robustness.md").read_text()

    def broken(*args, **kwargs):
        raise RuntimeError("no display")

    monkeypatch.setattr(plots, "plot_heatmap", broken)
    out = tmp_path / "broken"
    with caplog.at_level(logging.WARNING, logger="robustnoise.report.reporting"):
        report = write_report(Report.from_dict({"run_name": "gnt", "sets": acc}), out)
    assert report.metric("clean_top1") == 75.0 and (out / "robustness.json").is_file()
    assert (out / "severity_curves.png").is_file() and not (out / "heatmap.png").exists()
    assert "heatmap.png" not in (out / "robustness.md").read_text()
    assert "no display" in caplog.text


# --------------------------------------------------------------------------------------------------------- CLI


def test_cli_sweep_over_a_multirun_directory(tmp_path, capsys):
    multirun = tmp_path / "multirun"
    for job, (sigma, clean) in enumerate([(0.5, 60.0), (0.1, 80.0), (0.25, 70.0)]):
        acc = accuracies(clean, 1.0, ALL[:3])
        make_run(multirun, f"{job}_method.sigma={sigma}", acc, {"method": "gnt", "run_name": "gnt"}, sigma=sigma)
    (multirun / "3_method.sigma=1.0" / ".hydra").mkdir(parents=True)  # a job that died before its evaluation
    (multirun / "3_method.sigma=1.0" / ".hydra" / "config.yaml").write_text("method:\n  sigma: 1.0\n")
    (multirun / "multirun.yaml").write_text("hydra: {}\n")
    out = tmp_path / "cmp"

    assert compare.main([str(multirun), "--sweep-key", "method.sigma", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "3_method.sigma=1.0" in printed.err  # skipped, with a note
    rows = (out / "comparison.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert header[:3] == ["method.sigma", "run", "run_dir"]
    body = [dict(zip(header, r.split(","))) for r in rows[1:]]
    assert [r["method.sigma"] for r in body] == ["0.1", "0.25", "0.5"]
    assert [r["clean_top1"] for r in body] == ["80.0000", "70.0000", "60.0000"]
    assert [r["run"] for r in body] == ["gnt sigma=0.1", "gnt sigma=0.25", "gnt sigma=0.5"]
    assert body[0]["shot_noise/top1"] == f"{80 - 3 - 1:.4f}"
    md = (out / "comparison.md").read_text()
    assert header_of(md, "method.sigma")[:3] == ["method.sigma", "run", "clean top-1"]
    summary = md[md.index("## Summary") : md.index("## Top-1 per corruption")]
    firsts = [line.split("|")[1].strip() for line in summary.splitlines() if line.startswith("|")]
    assert firsts[2:] == ["0.1", "0.25", "0.5"]
    assert "![accuracy vs method.sigma](sweep.png)" in md
    _pixels(out / "sweep.png")
    assert "| gnt sigma=0.1" in printed.out


def test_cli_baseline_default_out_and_exit_codes(tmp_path, capsys):
    base = make_run(tmp_path, "vanilla", accuracies(70.0, 6.0, ALL[:2]), {"method": "vanilla", "run_name": "vanilla"})
    run = make_run(tmp_path, "gnt", accuracies(72.0, 3.0, ALL[:2]), {"method": "gnt", "run_name": "gnt"})
    assert compare.main([str(base), str(run), "--baseline", str(base)]) == 0
    assert (tmp_path / "comparison.md").is_file() and (tmp_path / "comparison.csv").is_file()
    assert [p.name for p in tmp_path.glob("*.png")] == ["comparison.png"]  # one chart, not one per run
    _pixels(tmp_path / "comparison.png")
    assert len((tmp_path / "comparison.csv").read_text().splitlines()) == 3
    out = tmp_path / "cmp"
    assert compare.main([str(run), "--baseline", str(base), "--out", str(out)]) == 0  # baseline not among the runs
    assert [r.split(",")[0] for r in (out / "comparison.csv").read_text().splitlines()[1:]] == ["vanilla", "gnt"]
    assert "vanilla (baseline)" in (out / "comparison.md").read_text()
    capsys.readouterr()

    empty = tmp_path / "not_evaluated"
    empty.mkdir()
    assert compare.main([str(run), str(empty)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no robustness.json in") and "\n" not in err
    assert compare.main([str(tmp_path / "nope")]) == 1
    assert compare.main([str(run), "--baseline", str(empty)]) == 1
    with pytest.raises(SystemExit) as exc:
        compare.main([])
    assert exc.value.code == 2


def test_group_chart_is_one_figure_with_shared_axes_and_eps_apart(tmp_path, monkeypatch):
    def report(clean: float, adv: float, eps: float) -> Report:
        acc = accuracies(clean, 2.0, ALL[:2])
        noise = {"epsilon": 1.0, "mean": adv, "std": 0.0, "worst": adv - 3}
        return Report(run_name="r", sets=acc, adversarial_noise=noise, eps_star={"gaussian": {"median": eps}})

    groups = [
        ("vanilla (baseline)", [report(90.0, 10.0, 2.0)]),
        ("ant", [report(85.0, 60.0, 5.0), report(87.0, 64.0, 6.0)]),
    ]
    drawn = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: drawn.append(fig) or Path(path))
    plots.plot_groups(groups, tmp_path / "g.png")
    accuracy, eps = drawn[0].axes
    assert accuracy.get_ylim() == (0, 101) and eps.get_ylim()[0] == 0 and 6.0 < eps.get_ylim()[1] < 8
    labels = [t.get_text() for t in accuracy.get_xticklabels()]
    assert labels == ["clean", "mean corruption", "adv. noise, mean", "adv. noise, worst"]
    heights = [[p.get_height() for p in c] for c in accuracy.containers if hasattr(c, "patches")]
    assert heights[0][0] == 90.0 and heights[1][2] == pytest.approx(62.0)  # the baseline, then the group's mean
    assert [t.get_text() for t in eps.get_xticklabels()] == ["eps* gaussian"]
    assert "n=2" in " ".join(t.get_text() for t in drawn[0].legends[0].get_texts())


def test_a_report_written_before_the_schema_loads_and_renders_the_same():
    """tests/data/report_before_schema: robustness.{json,md} as the code before the Report schema wrote them (MNIST-C
    benchmark under its old name, sigma keys as strings, eps*, adversarial noise, an attack)."""
    old = Path(__file__).parent / "data" / "report_before_schema"
    report = Report.load(old)
    assert report.benchmark is Benchmark.MNIST_C and report.label == "digits_ant" and report.seed == 1
    assert report.gaussian_sigmas == {0.1: 95.0, 0.5: 80.0, 1.0: 40.0}
    assert report.adversarial_worst() == 35.0 and report.eps_worst() == 2.5 and report.attack("linf_pgd")[0] == 12.5
    assert format_markdown(report) == (old / "robustness.md").read_text()  # the same tables as then
    raw = json.loads((old / "robustness.json").read_text())
    again = json.loads(json.dumps(report.to_dict()))
    assert again["benchmark"] == "mnistc" and {k for k in raw if raw[k] != again[k]} == {"benchmark"}
