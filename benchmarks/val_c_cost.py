"""The cost of ``eval.during_training`` (corrupted validation every epoch) as a share of one training epoch.

One epoch of the digits demo (Madry CNN, batch 32: the training steps over the train split plus the clean validation
pass) against the corrupted-validation pass of the same model (its default: 4 MNIST-C corruptions x 1 severity on up
to 256 validation images), timed by ``benchmarks.common.interleaved`` (CPU time, interleaved repetitions, medians).
The subset is built once per run, reported apart. The digits' train split is tiny (about 1 100 images), so the
share is large there; the last row scales the epoch to 50 000 images.
Run: ``python -m benchmarks.val_c_cost [--repeats 5] [--threads 1] [--max-images 256]``.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from benchmarks.common import configure, interleaved, parser, table
from robustnoise.corruptions.presets import MNIST_C_CORRUPTIONS
from robustnoise.data import DigitsDataModule
from robustnoise.models import create_model
from robustnoise.training.corrupted_validation import CorruptedValidation, default_corruptions


def run(args) -> str:
    device = configure(args)
    torch.manual_seed(0)
    dm = DigitsDataModule(batch_size=32, eval_batch_size=512, image_size=28, val_fraction=0.2, test_fraction=0.2)
    dm.setup("fit")
    model = create_model("madry_cnn", num_classes=10, in_chans=1, image_size=28).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    corruptions = default_corruptions(MNIST_C_CORRUPTIONS, "mnistc")
    callback = CorruptedValidation(1, corruptions, [1], "mnistc", getattr(args, "max_images", 256), batch_size=512)
    start = time.process_time()
    callback.build(dm.val_set)
    build = time.process_time() - start

    def epoch() -> None:
        model.train()
        for x, y in dm.train_dataloader():
            loss = F.cross_entropy(model(x.to(device)), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            for x, y in dm.val_dataloader():
                model(x.to(device)).argmax(1).eq(y.to(device)).sum()

    def val_c() -> None:
        model.eval()
        callback.accuracies(model, device)

    t = interleaved({"epoch": epoch, "val_c": val_c}, device, repeats=args.repeats)
    # the pass does not grow with the training split: same model, a 50 000-image train split (CIFAR-10's size)
    projected = t["epoch"] / len(dm.train_set) * 50_000
    rows = [
        ["training epoch (train steps + clean val)", t["epoch"], "-"],
        [f"val_c pass ({len(corruptions)} corruptions x 1 severity x {callback.images.shape[1]} images)", t["val_c"],
         f"{100 * t['val_c'] / t['epoch']:.1f}% of an epoch"],
        ["val_c subset build (once per run)", build, f"{100 * build / t['epoch']:.1f}% of one epoch"],
        ["projected: 50 000 training images", projected, f"{100 * t['val_c'] / projected:.2f}% of an epoch"],
    ]  # fmt: skip
    return (
        table(["what", "s (median)", "share"], rows) + f"\n({args.repeats} interleaved reps, {args.threads} thread(s))"
    )


def arguments():
    p = parser(__doc__)
    p.add_argument("--max-images", type=int, default=256)
    return p


if __name__ == "__main__":
    print(run(arguments().parse_args()))
