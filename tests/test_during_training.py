"""eval.during_training: a fixed, seeded corrupted validation subset evaluated every N epochs (val_c/*)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from robustnoise.data import DigitsDataModule
from robustnoise.train import run
from robustnoise.training.corrupted_validation import CorruptedValidation, default_corruptions
from robustnoise.utils.errors import ConfigError, RobustnoiseError

QUICK = [
    "experiment=digits_demo",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "eval.max_images=32",
    "eval.adversarial_noise.enabled=false",
    "eval.eps_star.enabled=false",
    "eval.gaussian_sigmas=[]",
    "eval.during_training.max_images=48",
    "callbacks=none",
    "trainer.enable_progress_bar=false",
    "logger=csv",
]


def _metrics(cfg) -> list[dict[str, str]]:
    with open(Path(cfg.paths.output_dir) / "csv" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_demo_logs_corrupted_validation_accuracy_every_epoch_on_a_fixed_subset(make_cfg, monkeypatch):
    seen: list[torch.Tensor] = []
    original = CorruptedValidation.accuracies

    def spy(self, *args, **kwargs):
        seen.append(self.images.clone())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CorruptedValidation, "accuracies", spy)
    cfg = make_cfg(*QUICK)
    run(cfg)
    rows = [r for r in _metrics(cfg) if r.get("val_c/mean_acc")]
    assert [int(r["epoch"]) for r in rows] == [0, 1]  # once per epoch, not in the sanity check
    corruptions = ["dotted_line", "shear", "shot_noise", "translate"]  # 4 spread over the 15 MNIST-C corruptions
    for r in rows:
        per = [float(r[f"val_c/{c}/acc"]) for c in corruptions]
        assert all(0.0 <= v <= 100.0 for v in per)  # percent, as val/acc
        assert float(r["val_c/mean_acc"]) == pytest.approx(sum(per) / len(per))
        counts = [v * 48 / 100 for v in per]  # percent of the 48 subset images: whole counts (a fraction is not)
        assert all(abs(c - round(c)) < 1e-4 for c in counts) and any(c >= 1 for c in counts)
    assert any(1.0 < float(r["val/acc"]) <= 100.0 for r in _metrics(cfg) if r.get("val/acc"))
    # the same images in both epochs, and a fresh build from the same seed gives them again
    assert len(seen) == 2 and torch.equal(seen[0], seen[1])
    fresh = CorruptedValidation(1, ["shot_noise", "shear", "translate", "dotted_line"], [1], "mnistc", 48)
    dm = DigitsDataModule(batch_size=32, image_size=28, val_fraction=0.2, test_fraction=0.2, split_seed=0)
    dm.setup("fit")
    fresh.build(dm.val_set)
    assert seen[0].shape == (4, 48, 1, 28, 28) and seen[0].dtype == torch.uint8
    assert torch.equal(seen[0], fresh.images)
    assert (Path(cfg.paths.output_dir) / "training_curves.png").stat().st_size > 10_000


def test_off_logs_no_val_c_keys(make_cfg):
    cfg = make_cfg(*QUICK, "trainer.max_epochs=1", "eval.during_training.every_n_epochs=0")
    run(cfg)
    rows = _metrics(cfg)
    assert any(r.get("val/acc") for r in rows)
    assert not [k for k in rows[0] if k.startswith("val_c/")]


def test_subset_is_seeded_and_defaults_are_few_spread_corruptions(digits):
    images, labels = digits
    dataset = torch.utils.data.TensorDataset(images[:16], labels[:16])
    builds = []
    for seed in (0, 0, 1):
        cb = CorruptedValidation(1, ["shot_noise", "impulse_noise"], [1], "mnistc", 16, seed=seed)
        cb.build(dataset)
        builds.append(cb.images)
    assert torch.equal(builds[0], builds[1]) and not torch.equal(builds[0], builds[2])
    # under DDP each rank counts its share (images rank::world) and the counts are summed: the same as one process
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10))
    whole = cb.accuracies(model, torch.device("cpu"))
    shares = [cb.accuracies(model, torch.device("cpu"), rank, 3) for rank in range(3)]
    assert torch.equal(sum(shares), whole) and whole.sum() > 0
    assert default_corruptions(["a", "b", "c", "d", "e", "f", "g", "h"], "imagenet") == ["a", "c", "e", "g"]
    assert len(default_corruptions([], "imagenet")) == 4
    with pytest.raises(ConfigError):
        CorruptedValidation(-1, ["shot_noise"], [1], "mnistc", 16)
    with pytest.raises(RobustnoiseError, match="unknown MNIST-C corruption 'gaussian_noise'"):
        CorruptedValidation(1, ["gaussian_noise"], [1], "mnistc", 16)  # checked before training, not in fit
