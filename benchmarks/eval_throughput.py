"""-C evaluation throughput: the whole harness (Lightning test loop, per-image records, metrics) against a bare
``model(x)`` loop over the same tensors, measured in the same run. Target: at most 10 % more time.

Sets stand in for released CIFAR-10-C files (in-memory uint8-range tensors, like the memory-mapped npy files).
Run: ``python -m benchmarks.eval_throughput [--device cuda] [--precision bf16-mixed]``.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.common import autocast, configure, interleaved, parser, quiet_lightning, table
from robustnoise.data import IndexedDataset
from robustnoise.eval.suite import CorruptionSuite
from robustnoise.methods.base import RobustClassifierModule
from robustnoise.methods.configs import method_from_yaml

SETS, IMAGES, BATCH = 4, 256, 128


def _method() -> RobustClassifierModule:
    data = {"num_classes": 10, "in_chans": 3, "image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}
    return method_from_yaml("vanilla", data, {"name": "preact_resnet18", "weights": None}, optimizer={"lr": 0.1})


def run(args) -> str:
    device = configure(args)
    torch.manual_seed(0)
    sets = [
        (f"set{k}", 1, TensorDataset(torch.rand(IMAGES, 3, 32, 32), torch.randint(10, (IMAGES,)))) for k in range(SETS)
    ]
    method = _method().eval().to(device)

    def bare() -> None:
        with torch.no_grad(), autocast(args):
            for _, _, dataset in sets:
                for x, _y in DataLoader(dataset, batch_size=BATCH):
                    method.classifier(x.to(device, non_blocking=True))

    def harness() -> None:
        clean = IndexedDataset(sets[0][2])
        suite = CorruptionSuite(clean, [], [1], batch_size=BATCH, released=[(n, s, d) for n, s, d in sets[1:]])
        method.test_suite = suite
        with quiet_lightning():
            trainer = pl.Trainer(
                accelerator="gpu" if device.type == "cuda" else "cpu",
                devices=1,
                precision=args.precision,
                logger=False,
                enable_progress_bar=False,
                enable_model_summary=False,
            )
            trainer.test(method, dataloaders=suite.dataloaders(), verbose=False)
        suite.accuracies()

    t = interleaved({"bare": bare, "harness": harness}, device, repeats=args.repeats)
    images = SETS * IMAGES
    rows = [
        ["bare model(x) loop", images / t["bare"], 1.0],
        ["robustnoise harness", images / t["harness"], t["harness"] / t["bare"]],
    ]
    clock = "CPU time" if device.type == "cpu" else "wall time"
    return "\n\n".join(
        [
            f"device {args.device}, precision {args.precision}, {args.threads} thread(s), {args.repeats} repeats",
            table(["path", f"images/s ({clock})", "time / bare"], rows),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    print(run(parser(__doc__, repeats=3).parse_args(argv)))


if __name__ == "__main__":
    main()
