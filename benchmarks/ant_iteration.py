"""One ANT iteration divided by one GNT iteration, same model, batch and machine, measured in the same run.

ANT iteration = generator step (forward + input-gradient backward through the frozen classifier) + mixed batch
(current generator + two replayed snapshots, from memory) + classifier step. GNT iteration = noise + classifier step.
The floor is one extra classifier forward and input-only backward: about 5/3 if an input-gradient backward costs a
forward, more on CPUs where it costs nearly a full backward (the ``floor / GNT`` column measures it in the same run).
Restarts are not included: they add ``restart_steps`` generator steps per restart interval.
Run: ``python -m benchmarks.ant_iteration``.
"""

from __future__ import annotations

import tempfile

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.common import median_time, table
from robustnoise.methods.configs import method_from_yaml

CASES = [
    ("madry_cnn", 1, 28, 10, 128),
    ("resnet18", 3, 64, 200, 64),
]


def _attach(method: pl.LightningModule, x: torch.Tensor, y: torch.Tensor) -> None:
    """One real training iteration, so the module has its trainer and optimisers; then we time its steps directly."""
    loader = DataLoader(TensorDataset(x, y), batch_size=len(x))
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_steps=1,
        limit_val_batches=0,
        default_root_dir=tempfile.mkdtemp(prefix="robustnoise-bench-"),
    )
    trainer.fit(method, train_dataloaders=loader)


def build(method_name: str, model: str, x: torch.Tensor, y: torch.Tensor, classes: int, **kw):
    chans, size = x.shape[1], x.shape[2]
    data = {"num_classes": classes, "in_chans": chans, "image_size": size, "mean": [0.5] * chans, "std": [0.25] * chans}
    common = {"scheduler": {"name": "none"}, "optimizer": {"name": "sgd", "lr": 1e-3, "momentum": 0.9}}
    method = method_from_yaml(method_name, data, {"name": model, "weights": None}, **common, **kw)
    _attach(method, x, y)
    return method


def run() -> str:
    torch.set_num_threads(1)
    rows = []
    for model, chans, size, classes, batch in CASES:
        torch.manual_seed(0)
        x = torch.rand(batch, chans, size, size)
        y = torch.randint(classes, (batch,))
        gnt = build("gnt", model, x, y, classes, sigma=0.5)
        ant = build("ant1x1", model, x, y, classes, epsilon=float(size) / 2, restart_at_start=False)
        ant._snapshot("interval")
        ant._snapshot("interval")  # two replay entries: the full 50/30/20 batch

        def gnt_iteration(gnt=gnt, x=x, y=y):
            gnt.classifier_step(gnt.perturb_batch(x, y), y)

        def ant_iteration(ant=ant, x=x, y=y):
            ant.generator_step(x, y)
            ant.classifier_step(*ant.mixed_batch(x, y))

        def generator_step_only(ant=ant, x=x, y=y):
            ant.generator_step(x, y)

        def floor_step(ant=ant, x=x, y=y):  # the unavoidable part: classifier forward + input-gradient backward
            ant.classifier.eval().requires_grad_(False)
            xx = x.clone().requires_grad_()
            torch.nn.functional.cross_entropy(ant.classifier(xx), y).backward()
            ant.classifier.train().requires_grad_(True)

        t_floor = median_time(floor_step, repeats=5)
        t_gnt = median_time(gnt_iteration, repeats=5)
        t_ant = median_time(ant_iteration, repeats=5)
        t_gen = median_time(generator_step_only, repeats=5)
        rows.append(
            [f"{model} {size}px b{batch}", t_gnt * 1e3, t_ant * 1e3, t_ant / t_gnt, t_gen / t_gnt, 1 + t_floor / t_gnt]
        )
    return table(["case", "GNT ms/it", "ANT ms/it", "ANT / GNT", "generator step / GNT", "floor / GNT"], rows)


if __name__ == "__main__":
    print(run())
