"""The cost of ``eval.during_training`` (corrupted validation every epoch) as a share of one training epoch.

One epoch of the digits demo (Madry CNN, batch 32: the training steps over the train split plus the clean validation
pass) against the corrupted-validation pass of the same model (its default: 4 MNIST-C corruptions x 1 severity on up
to 256 validation images), CPU time (``time.process_time``), repetitions interleaved (epoch, pass, epoch, pass, ...)
so that machine load hits both alike; medians. The subset is built once per run, reported apart. The digits' train
split is tiny (about 1 100 images), so the share is large there; the last row scales the epoch to 50 000 images.
Run: ``python -m benchmarks.val_c_cost [--reps 5] [--threads 1] [--max-images 256]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from benchmarks.common import table
from robustnoise.callbacks import CorruptedValidation, default_corruptions
from robustnoise.corruptions.presets import MNIST_C_CORRUPTIONS
from robustnoise.data import DigitsDataModule
from robustnoise.models import create_model


def _cpu(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def run(reps: int = 5, threads: int = 1, max_images: int = 256) -> str:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dm = DigitsDataModule(batch_size=32, eval_batch_size=512, image_size=28, val_fraction=0.2, test_fraction=0.2)
    dm.setup("fit")
    model = create_model("madry_cnn", num_classes=10, in_chans=1, image_size=28)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    corruptions = default_corruptions(MNIST_C_CORRUPTIONS, "mnistc")
    callback = CorruptedValidation(1, corruptions, [1], "mnistc", max_images, batch_size=512)
    build = _cpu(lambda: callback.build(dm.val_set))

    def epoch() -> None:
        model.train()
        for x, y in dm.train_dataloader():
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            for x, y in dm.val_dataloader():
                model(x).argmax(1).eq(y).sum()

    def val_c() -> None:
        model.eval()
        callback.accuracies(model, torch.device("cpu"))

    epoch(), val_c()  # warm-up
    epochs, passes = [], []
    for _ in range(reps):
        epochs.append(_cpu(epoch))
        passes.append(_cpu(val_c))
    shares = [p / e for p, e in zip(passes, epochs)]
    rows = [
        ["training epoch (train steps + clean val)", statistics.median(epochs), "-"],
        [f"val_c pass ({len(corruptions)} corruptions x 1 severity x {callback.images.shape[1]} images)",
         statistics.median(passes), f"{100 * statistics.median(shares):.1f}% of an epoch"],
        ["val_c subset build (once per run)", build, f"{100 * build / statistics.median(epochs):.1f}% of one epoch"],
    ]  # fmt: skip
    # the pass does not grow with the training split: same model, a 50 000-image train split (CIFAR-10's size)
    per_image = statistics.median(epochs) / len(dm.train_set)
    rows.append(["projected: 50 000 training images", per_image * 50_000,
                 f"{100 * statistics.median(passes) / (per_image * 50_000):.2f}% of an epoch"])  # fmt: skip
    return table(["what", "CPU s (median)", "share"], rows) + f"\n({reps} interleaved reps, {threads} thread(s))"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-images", type=int, default=256)
    args = parser.parse_args()
    print(run(args.reps, args.threads, args.max_images))


if __name__ == "__main__":
    main()
