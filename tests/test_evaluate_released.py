"""Evaluation on released -C files: severity slicing and label alignment through the whole suite and task=eval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from robustnoise.data import IndexedDataset
from robustnoise.data.released_c import released_c_sets
from robustnoise.eval.suite import CorruptionSuite
from robustnoise.train import run

N = 12  # test images per severity


def write_cifar_c(root: Path, corruptions=("fog", "snow")) -> None:
    """Pixel (0,0) encodes the label, pixel (0,1) the severity, pixel (0,2) the corruption: a known answer per set."""
    root.mkdir(parents=True)
    labels = np.arange(N) % 10
    np.save(root / "labels.npy", np.tile(labels, 5).astype(np.uint8))
    for cid, name in enumerate(corruptions):
        images = np.zeros((5 * N, 32, 32, 3), dtype=np.uint8)
        for s in range(5):
            rows = slice(s * N, (s + 1) * N)
            images[rows, 0, 0, 0] = labels * 20
            images[rows, 0, 1, 0] = (s + 1) * 40
            images[rows, 0, 2, 0] = cid * 100
        np.save(root / f"{name}.npy", images)


class SeverityOracle(nn.Module):
    """Reads label, severity and corruption from the pixels: right on fog up to severity 2 and snow up to 4."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        label = (x[:, 0, 0, 0] * 255 / 20).round().long()
        severity = (x[:, 0, 0, 1] * 255 / 40).round().long()
        snow = x[:, 0, 0, 2] > 0.2
        right = torch.where(snow, severity <= 4, severity <= 2)
        pred = torch.where(right, label, (label + 3) % 10)
        return nn.functional.one_hot(pred, 10).float()


def test_released_sets_land_in_their_own_slots(tmp_path):
    write_cifar_c(tmp_path / "CIFAR-10-C")
    sets = released_c_sets("cifar10c", tmp_path / "CIFAR-10-C")
    clean = IndexedDataset(TensorDataset(torch.zeros(N, 3, 32, 32), torch.arange(N) % 10))
    suite = CorruptionSuite(clean, [], [1, 2, 3, 4, 5], released=sets, batch_size=5)
    suite.reset(torch.device("cpu"))
    model = SeverityOracle()
    for loader_idx, loader in enumerate(suite.dataloaders()):
        for x, y, index in loader:
            suite.evaluate_batch(model, x, y, index, loader=loader_idx)
    acc = suite.accuracies()
    assert [acc[f"fog/s{s}"]["top1"] for s in range(1, 6)] == [100.0, 100.0, 0.0, 0.0, 0.0]
    assert [acc[f"snow/s{s}"]["top1"] for s in range(1, 6)] == [100.0, 100.0, 100.0, 100.0, 0.0]
    assert all(acc[f"fog/s{s}"]["n"] == N for s in range(1, 6))


def write_mnist_c(root: Path, digits_test: torch.Tensor, labels: torch.Tensor) -> None:
    for name, transform in (("identity", lambda x: x), ("stripe", lambda x: 1 - x)):
        folder = root / name
        folder.mkdir(parents=True)
        images = (transform(digits_test[:, 0]) * 255).round().clamp(0, 255).byte().numpy()[..., None]
        np.save(folder / "test_images.npy", images)
        np.save(folder / "test_labels.npy", labels.numpy().astype(np.uint8))


def test_task_eval_on_released_mnist_c_files(make_cfg, tmp_path):
    from robustnoise.data import DigitsDataModule

    train_cfg = make_cfg(
        "trainer.max_epochs=3",
        "eval=none",
        "method.optimizer.lr=0.05",
        "callbacks.progress_bar=null",
        "trainer.enable_progress_bar=false",
    )
    run(train_cfg)
    ckpt = Path(train_cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    dm = DigitsDataModule()
    dm.setup()
    x, y = dm.test_set.tensors
    write_mnist_c(tmp_path / "mnist_c", x, y)

    from tests.conftest import compose_config

    out = tmp_path / "eval"
    cfg = compose_config(
        ["task=eval", f"ckpt_path={ckpt}", "eval=mnistc", f"eval.released.root={tmp_path / 'mnist_c'}"], out
    )
    run(cfg)
    report = json.loads((out / "robustness.json").read_text())
    assert set(report["sets"]) == {"clean", "identity/s1", "stripe/s1"}
    # identity is the clean test split written to disk: same accuracy as the clean evaluation
    assert abs(report["sets"]["identity/s1"]["top1"] - report["sets"]["clean"]["top1"]) < 0.5
    assert report["sets"]["clean"]["top1"] > 60  # the classifier learned something in 3 epochs
    assert report["sets"]["stripe/s1"]["top1"] < report["sets"]["clean"]["top1"] - 20  # inverted digits are hard
    assert report["benchmark"] == "mnistc" and "unnormalized_mce" in report["metrics"]
