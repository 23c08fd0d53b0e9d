"""Seeds as the unit: grouping runs that differ only in the seed, the interval rule, the sigma sweep, the presets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.data import TensorDataset

from robustnoise.corruptions import sample_seeds
from robustnoise.data import IndexedDataset
from robustnoise.eval.suite import CorruptionSuite, gaussian_noise_images
from robustnoise.report import compare
from robustnoise.report.reporting import REPORT_JSON, Interval, Report, seed_interval, separated


def _run(root: Path, name: str, method: str, seed: int, clean: float, sigma: dict[str, float] | None = None) -> Path:
    """A run directory as run.py leaves it: the Hydra config and overrides, and robustness.json."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    config = {"seed": seed, "method": {"name": method, "lr": 0.1}, "data": {"name": "digits"}}
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    overrides = ["experiment=digits_demo", f"method={method}", f"seed={seed}", f"hydra.run.dir={run}"]
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    report = {"method": method, "clean_top1": clean, "sets": {"clean": {"top1": clean, "top5": 100.0, "n": 10}}}
    if sigma:
        report["gaussian_sigmas"] = sigma
    (run / REPORT_JSON).write_text(json.dumps(report))
    return run


def test_runs_that_differ_only_in_the_seed_form_one_group(tmp_path):
    dirs = [
        _run(tmp_path, "0", "vanilla", 0, 90.0),
        _run(tmp_path, "1", "gnt", 0, 80.0),
        _run(tmp_path, "2", "vanilla", 1, 91.0),
        _run(tmp_path, "3", "gnt", 1, 81.0),
    ]
    reports = [Report.load(d) for d in dirs]
    groups = compare.group_runs(dirs, reports)
    assert groups == [("vanilla", [0, 2]), ("gnt", [1, 3])]


def test_a_config_difference_besides_the_seed_splits_the_group(tmp_path):
    a = _run(tmp_path, "a", "gnt", 0, 80.0)
    b = _run(tmp_path, "b", "gnt", 1, 80.0)
    config = yaml.safe_load((b / ".hydra" / "config.yaml").read_text())
    config["method"]["lr"] = 0.2  # another value: not the same recipe
    (b / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    overrides = yaml.safe_load((b / ".hydra" / "overrides.yaml").read_text()) + ["method.lr=0.2"]
    (b / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    reports = [Report.load(d) for d in (a, b)]
    # same method: the groups are told apart by the override in which they differ
    assert compare.group_runs([a, b], reports) == [("gnt", [0]), ("method.lr=0.2", [1])]


def test_interval_rule_min_max_below_five_seeds_t_interval_from_five():
    assert seed_interval([3.0, 1.0, 2.0]) == Interval(2.0, 1.0, 3.0, 3)
    five = seed_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    # mean 3, s = sqrt(2.5), t(0.975, 4) = 2.7764: half-width 1.9632 (wider than nothing, narrower than min-max)
    assert five.mean == pytest.approx(3.0) and five.n == 5
    assert five.hi - five.mean == pytest.approx(2.7764 * math.sqrt(2.5) / math.sqrt(5), rel=1e-4)
    assert five.mean - five.lo == pytest.approx(five.hi - five.mean)
    assert seed_interval([float("nan"), 4.0]) == Interval(4.0, 4.0, 4.0, 1)


def test_only_separated_intervals_are_marked():
    low, high = seed_interval([90.0, 92.0]), seed_interval([92.5, 95.0])
    overlapping = seed_interval([91.0, 93.0])
    assert separated(high, low) == 1 and separated(low, high) == -1
    assert separated(high, overlapping) == 0 and separated(overlapping, low) == 0
    assert separated(seed_interval([99.0]), low) == 0  # one seed says nothing about seed noise


def test_grouped_table_marks_a_difference_only_when_the_seeds_separate(tmp_path):
    dirs = [
        _run(tmp_path, "0", "vanilla", 0, 90.0, {"0.5": 50.0}),
        _run(tmp_path, "1", "vanilla", 1, 92.0, {"0.5": 60.0}),
        _run(tmp_path, "2", "gnt", 0, 91.0, {"0.5": 80.0}),
        _run(tmp_path, "3", "gnt", 1, 93.0, {"0.5": 85.0}),
    ]
    reports = [Report.load(d) for d in dirs]
    table = compare.grouped_table(reports, compare.group_runs(dirs, reports))
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:4]] for line in table.splitlines()[2:]}
    assert rows["clean top-1"] == ["91.0 [90.0, 92.0]", "92.0 [91.0, 93.0]"]  # overlapping: no mark
    assert rows["gaussian sigma 0.5"] == ["55.0 [50.0, 60.0]", "82.5 [80.0, 85.0] >1"]


def test_compare_cli_prints_the_grouped_table_and_draws_the_sigma_bands(tmp_path, capsys):
    for k, (method, seed) in enumerate([("vanilla", 0), ("vanilla", 1), ("gnt", 0), ("gnt", 1)]):
        _run(tmp_path / "sweep", f"{k}_job", method, seed, 90.0 + k, {"0.2": 70.0 + 5 * k, "0.6": 40.0 + 10 * k})
    assert compare.main([str(tmp_path / "sweep")]) == 0
    out = capsys.readouterr().out
    assert "(1) vanilla, n=2" in out and "(2) gnt, n=2" in out
    assert (tmp_path / "sweep" / compare.SIGMA_SWEEP_PNG).stat().st_size > 1000
    header = (tmp_path / "sweep" / compare.COMPARISON_CSV).read_text().splitlines()[0].split(",")
    assert "gaussian_sigma/0.6/top1" in header


def test_gaussian_noise_has_the_requested_std_before_clipping():
    x = torch.full((16, 1, 28, 28), 0.5)
    seeds = sample_seeds(7, torch.arange(16), 2000, 100)
    noise = gaussian_noise_images(x, 0.1, seeds) - x  # 0.1 std around 0.5: clipping at 5 std is negligible
    assert noise.std().item() == pytest.approx(0.1, rel=0.03) and abs(noise.mean().item()) < 0.005
    assert not torch.allclose(noise[0], noise[1])  # each image its own draw
    other = gaussian_noise_images(x[:3], 0.1, seeds[:3]) - x[:3]
    assert torch.allclose(other, noise[:3], atol=1e-6)  # seeded per image, not per batch
    assert gaussian_noise_images(x, 1.0, seeds).min() >= 0 and gaussian_noise_images(x, 1.0, seeds).max() <= 1


class StdOracle(torch.nn.Module):
    """Right (class 0) on images whose pixel std is below ``max_std``, wrong (class 1) above."""

    def __init__(self, max_std: float) -> None:
        super().__init__()
        self.max_std = max_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noisy = (x.flatten(1).std(dim=1) > self.max_std).long()
        return torch.nn.functional.one_hot(noisy, 2).float()


def test_sigma_sweep_results_are_keyed_per_sigma_and_sigma_zero_is_clean():
    images, labels = torch.full((12, 1, 32, 32), 0.5), torch.zeros(12, dtype=torch.long)
    suite = CorruptionSuite(IndexedDataset(TensorDataset(images, labels)), [], [1], gaussian_sigmas=[0.5, 0, 0.1])
    suite.reset(torch.device("cpu"))
    for x, y, index in suite.dataloaders()[0]:
        suite.evaluate_batch(StdOracle(max_std=0.25), x, y, index)
    sweep = suite.adversarial_results()["gaussian_sigmas"]
    assert sweep == {"0.5": 0.0, "0": suite.accuracies()["clean"]["top1"], "0.1": 100.0}


@pytest.mark.parametrize(
    ("overrides", "preset"),
    [
        (["experiment=digits_demo"], "mnistc"),
        (["data=mnist", "eval=mnist_c_generated"], "mnistc"),
        (["data=cifar10"], "cifar"),
        (["data=tiny_imagenet"], "tinyimagenet"),
        (["data=imagenet"], "imagenet"),
    ],
)
def test_each_dataset_evaluates_with_the_preset_of_its_size(make_cfg, overrides, preset):
    from robustnoise.eval.evaluate import generated_preset

    cfg = make_cfg(*overrides)
    assert generated_preset(cfg.eval, cfg.data.corruption_preset) == preset


def test_a_sweep_over_seeds_is_not_plotted_against_the_seed(tmp_path):
    from robustnoise.report.sweep import plot_key

    dirs = [_run(tmp_path, str(k), m, s, 90.0) for k, (m, s) in enumerate([("vanilla", 0), ("gnt", 0), ("gnt", 1)])]
    assert plot_key(dirs, ["seed", "method"]) == "method.name"
    assert plot_key(dirs, ["seed"]) is None
