"""-C evaluation throughput: the whole harness (Lightning test loop, per-image records, metrics) against a bare
``model(x)`` loop over the same tensors, measured in the same run. Target: at most 10 % more time.

Sets stand in for released CIFAR-10-C files (in-memory uint8-range tensors, like the memory-mapped npy files).
Run: ``python -m benchmarks.eval_throughput``.
"""

from __future__ import annotations

import logging
import time

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.common import table
from robustnoise.data import IndexedDataset
from robustnoise.evaluate import CorruptionSuite
from robustnoise.methods import RobustClassifierModule
from robustnoise.methods.configs import method_from_yaml

SETS, IMAGES, BATCH = 4, 256, 128


def _method() -> RobustClassifierModule:
    data = {"num_classes": 10, "in_chans": 3, "image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}
    return method_from_yaml("vanilla", data, {"name": "preact_resnet18", "weights": None}, optimizer={"lr": 0.1})


def run() -> str:
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    torch.manual_seed(0)
    sets = [
        (f"set{k}", 1, TensorDataset(torch.rand(IMAGES, 3, 32, 32), torch.randint(10, (IMAGES,)))) for k in range(SETS)
    ]
    method = _method().eval()

    def bare() -> float:
        start = time.perf_counter()
        with torch.no_grad():
            for _, _, dataset in sets:
                for x, _y in DataLoader(dataset, batch_size=BATCH):
                    method.classifier(x)
        return time.perf_counter() - start

    def harness() -> float:
        clean = IndexedDataset(sets[0][2])
        suite = CorruptionSuite(clean, [], [1], batch_size=BATCH, released=[(n, s, d) for n, s, d in sets[1:]])
        method.test_suite = suite
        trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
        start = time.perf_counter()
        trainer.test(method, dataloaders=suite.dataloaders(), verbose=False)
        suite.accuracies()
        return time.perf_counter() - start

    bare(), harness()  # warm-up
    t_bare = min(bare() for _ in range(2))
    t_harness = min(harness() for _ in range(2))
    images = SETS * IMAGES
    rows = [
        ["bare model(x) loop", images / t_bare, 1.0],
        ["robustnoise harness", images / t_harness, t_harness / t_bare],
    ]
    return table(["path", "images/s", "time / bare"], rows)


if __name__ == "__main__":
    print(run())
