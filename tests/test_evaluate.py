"""The evaluation table on models with known behaviour: severity slicing, label alignment, DDP-style merging."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from robustnoise.data import DigitsDataModule, IndexedDataset
from robustnoise.eval.suite import CorruptionSuite, to_uint8_grid
from robustnoise.report.reporting import Report, format_table, summarize, write_report


class NoiseLevelOracle(nn.Module):
    """Reads the label from a flat image's brightness, and answers wrongly when the image is noisier than ``max_std``.

    Images of class k are flat grey at 0.41 + 0.02 k (64x64, so the mean is robust to noise). Under Gaussian noise of
    std sigma the pixel std is about sigma: accuracy is 100 % for the severities whose sigma lies below ``max_std``
    and 0 % above, which checks that each severity's results land in its own slot.
    """

    def __init__(self, max_std: float) -> None:
        super().__init__()
        self.max_std = max_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        decoded = ((flat.mean(dim=1) - 0.41) / 0.02).round().long().clamp(0, 9)
        noisy = flat.std(dim=1) > self.max_std
        label = torch.where(noisy, (decoded + 5) % 10, decoded)  # +5: wrong even if decoding is off by one
        logits = torch.zeros(len(x), 10)
        logits[torch.arange(len(x)), label] = 10.0
        for off in (-1, 0, 1):  # and the true class ranks last (top-5 wrong too), even if decoding is off by one
            logits[noisy, (decoded[noisy] + off) % 10] = -10.0
        return logits


def make_suite(n: int = 40, corruptions=("gaussian_noise",), batch_size: int = 16):
    labels = torch.arange(n) % 10
    images = (0.41 + 0.02 * labels.float()).view(n, 1, 1, 1).expand(n, 1, 64, 64).clone()
    suite = CorruptionSuite(
        IndexedDataset(TensorDataset(images, labels)),
        list(corruptions),
        [1, 2, 3, 4, 5],
        "imagenet",
        seed=3,
        batch_size=batch_size,
    )
    return suite, images, labels


def run_suite(suite, model, indices=None):
    suite.reset(torch.device("cpu"))
    for x, y, index in suite.dataloaders()[0]:
        keep = torch.ones(len(index), dtype=torch.bool) if indices is None else torch.isin(index, indices)
        if keep.any():
            suite.evaluate_batch(model, x[keep], y[keep], index[keep])
    return suite.accuracies()


def test_accuracy_per_severity_follows_the_noise_level():
    suite, images, labels = make_suite()
    # imagenet gaussian_noise sigmas: .08 .12 .18 | .26 .38
    acc = run_suite(suite, NoiseLevelOracle(max_std=0.22))
    assert acc["clean"] == {"top1": 100.0, "top5": 100.0, "n": 40}
    assert [acc[f"gaussian_noise/s{s}"]["top1"] for s in range(1, 6)] == [100.0, 100.0, 100.0, 0.0, 0.0]
    assert acc["gaussian_noise/s4"]["top5"] == 0.0  # the oracle's 2nd guess is wrong too, the rest are ties at 0
    summary = summarize(acc)
    assert summary["corrupted_top1"] == 60.0 and summary["per_corruption"]["gaussian_noise"]["top1"] == 60.0


def test_top5_counts_the_label_among_the_five_best():
    suite, _, _ = make_suite(n=20)

    class FixedRanking(nn.Module):
        def forward(self, x):
            return torch.arange(10, 0, -1, dtype=torch.float32).expand(len(x), 10)  # ranks classes 0, 1, ..., 9

    acc = run_suite(suite, FixedRanking())
    assert acc["clean"]["top1"] == 10.0  # labels are i % 10: class 0 is right for 2 of 20
    assert acc["clean"]["top5"] == 50.0  # classes 0..4 are in the top five


def test_records_merge_like_two_ranks_and_ignore_padding_duplicates():
    suite, images, labels = make_suite(n=30)
    oracle = NoiseLevelOracle(max_std=0.22)
    full = run_suite(suite, oracle)
    suite_a, _, _ = make_suite(n=30)
    suite_b, _, _ = make_suite(n=30)
    run_suite(suite_a, oracle, torch.arange(0, 30, 2))
    run_suite(suite_b, oracle, torch.cat([torch.arange(1, 30, 2), torch.tensor([0])]))  # 0 again: sampler padding
    suite_a.top1 = [torch.maximum(a, b) for a, b in zip(suite_a.top1, suite_b.top1)]  # what gather() all-reduces
    suite_a.top5 = [torch.maximum(a, b) for a, b in zip(suite_a.top5, suite_b.top5)]
    assert suite_a.accuracies() == full


@pytest.mark.exact  # noise corruptions: counter-based draws, elementwise arithmetic
def test_corruption_does_not_depend_on_batch_size():
    suite_small, images, labels = make_suite(batch_size=3, corruptions=("gaussian_noise", "impulse_noise"))
    suite_big, _, _ = make_suite(batch_size=40, corruptions=("gaussian_noise", "impulse_noise"))
    for k in range(1, len(suite_small.sets)):
        index = torch.arange(40)
        a = suite_small.corrupted(suite_small.sets[k], images, index)
        b = torch.cat(
            [suite_big.corrupted(suite_big.sets[k], images[i : i + 3], index[i : i + 3]) for i in range(0, 40, 3)]
        )
        assert torch.equal(a, b)


def test_report_files_and_table(tmp_path):
    suite, images, labels = make_suite()
    acc = run_suite(suite, NoiseLevelOracle(max_std=0.22))
    write_report(Report(sets=acc, method="oracle"), tmp_path)
    raw = json.loads((tmp_path / "robustness.json").read_text())
    assert raw["clean_top1"] == 100.0 and raw["corrupted_top1"] == 60.0
    report = Report.load(tmp_path)
    csv_rows = (tmp_path / "robustness.csv").read_text().splitlines()
    assert csv_rows[0] == "corruption,severity,top1,top5,n" and csv_rows[1].startswith("clean,0,100.0000")
    assert "gaussian_noise,4,0.0000" in "\n".join(csv_rows)
    table = format_table([report, report], ["a", "b"])
    assert table.splitlines()[2].split()[:4] == ["a", "100.0", "60.0", "100.0"]


def test_accuracies_do_not_depend_on_the_batch_size():
    """Digits under FFT / GEMM corruptions (float results differ at ~1e-7 between batch shapes), evaluated by a linear
    model (a GEMM, itself batch-shape dependent) at eval batch sizes 7 and 60: identical per-image records, except
    possibly at near-ties.

    The images reach the model on the 8-bit grid, so a 1e-7 difference either vanishes or, in an occasional pixel next
    to a half-level, becomes one grey level; with a linear model one such pixel moves the gap between two logits by at
    most ``2 max|W| / 255``. An image whose two best logits are further apart than 4 such pixels (plus float rounding)
    keeps its prediction on any CPU; only the others may flip, and the accuracies differ by at most their count.
    """
    dataset = DigitsDataModule().test_dataset(60)
    images, labels, index = next(iter(DataLoader(dataset, batch_size=60)))
    centroids = torch.stack([images[labels == c].mean(0).flatten() for c in range(10)])
    linear = nn.Linear(images[0].numel(), 10)  # nearest-centroid classifier: logit_c = <x, m_c> - |m_c|^2 / 2
    with torch.no_grad():
        linear.weight.copy_(centroids)
        linear.bias.copy_(-0.5 * centroids.square().sum(1))
    net = nn.Sequential(nn.Flatten(), linear)
    seen = []
    net.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    corruptions = ["defocus_blur", "elastic_transform", "gaussian_noise"]
    suites = [CorruptionSuite(dataset, corruptions, [2, 5], seed=1, batch_size=b) for b in (7, 60)]
    accuracies = [run_suite(suite, net) for suite in suites]
    clean, *corrupted = seen[-7:]  # the one batch of 60: clean, then 3 corruptions x 2 severities
    assert torch.equal(clean, images)  # clean images as they are (the upsampled digits are not on the grid)...
    assert all(torch.equal(x * 255, (x * 255).round()) for x in corrupted)  # ... corrupted ones on the 8-bit grid
    assert accuracies[0]["clean"]["top1"] > 50  # a real classifier, not constant predictions
    with torch.no_grad():
        gaps = []
        for eval_set in suites[1].sets:
            x = images if eval_set.corruption is None else to_uint8_grid(suites[1].corrupted(eval_set, images, index))
            gaps.append(net(x).topk(2, dim=1).values.diff(dim=1).abs().squeeze(1))
    near_tie = torch.stack(gaps) <= 4 * 2 * float(linear.weight.detach().abs().max()) / 255 + 1e-4
    assert int(near_tie.sum()) <= 10  # a handful of the 420 (set, image) pairs (4 here)
    records = [torch.stack(suite.top1) for suite in suites]
    assert torch.equal(records[0][~near_tie], records[1][~near_tie])
    for key, acc in accuracies[0].items():
        assert abs(acc["top1"] - accuracies[1][key]["top1"]) <= 100 * int(near_tie.sum()) / 60, key


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("eval.attacks.autoattack={norm: Linfinity, epsilon: 0.1}", "autoattack.norm"),
        ("eval.attacks.autoattack={version: custom, parts: [pgd], epsilon: 0.1}", "autoattack.parts"),
        ("+eval.attacks.fgsm={epsilon: 0.1}", "unknown attack"),
    ],
)
def test_attack_settings_are_checked_before_training(override, message):
    """A typo in eval.attacks is one ConfigError from the pre-training check, not an error after hours of training."""
    from robustnoise.eval.evaluate import check_eval_config
    from robustnoise.methods.configs import compose_config
    from robustnoise.utils.errors import ConfigError

    cfg = compose_config([override])
    with pytest.raises(ConfigError, match=message):
        check_eval_config(cfg, DigitsDataModule())
