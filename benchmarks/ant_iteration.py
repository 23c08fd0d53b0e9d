"""One ANT iteration divided by one GNT iteration, same model, batch and machine, measured in the same run, beside
the reference's iteration and the floor.

ANT iteration = (a) generator step (forward + input-gradient backward through the frozen classifier) + (b) mixed
batch (current generator + two replayed snapshots from memory) + (c) classifier step. GNT iteration = noise +
classifier step. Floor = GNT + one classifier forward and input-only backward: what any generator step costs at
least. The reference's iteration is written from the paper's algorithm as bethgelab/game-of-noise runs it
(``main.py``/``utils.py``): the classifier is not frozen in the generator step (its weight gradients are computed and
then zeroed), the two replay generators are loaded from disk (``torch.load`` of saved state dicts, a glob and a
shuffle) every iteration, and its clipping-aware rescaling is Rauber & Bethge's sort-based one (foolbox's
``l2_clipping_aware_rescaling``; ours finds the same segment by Newton's method). Each part's share of its iteration
is printed, and of the generator step the share beyond the floor (generator, projection, optimiser). Restarts are
not included: they add ``restart_steps`` generator steps per interval.
Run: ``python -m benchmarks.ant_iteration [--device cuda] [--precision bf16-mixed]``.
"""

from __future__ import annotations

import copy
import glob
import os
import random
import tempfile
from typing import Any

import eagerpy as ep
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from foolbox.external.clipping_aware_rescaling import l2_clipping_aware_rescaling
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.common import autocast, configure, interleaved, parser, quiet_lightning, table
from robustnoise.methods.ant import AdversarialNoiseTraining
from robustnoise.methods.configs import method_from_yaml
from robustnoise.noise import NoiseGenerator

CASES = [  # model, channels, image size, classes, batch
    ("madry_cnn", 1, 28, 10, 128),
    ("resnet18", 3, 64, 200, 64),
]


def _attach(method: pl.LightningModule, x: torch.Tensor, y: torch.Tensor, precision: str = "32") -> None:
    """One real training iteration, so the module has its trainer and optimisers; then we time its steps directly."""
    loader = DataLoader(TensorDataset(x.cpu(), y.cpu()), batch_size=len(x))
    with quiet_lightning():
        trainer = pl.Trainer(
            accelerator="gpu" if x.is_cuda else "cpu",
            devices=1,
            precision=precision,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            max_steps=1,
            limit_val_batches=0,
            default_root_dir=tempfile.mkdtemp(prefix="robustnoise-bench-"),
        )
        trainer.fit(method, train_dataloaders=loader)


def build(method: str, model: str, x: torch.Tensor, y: torch.Tensor, classes: int, precision: str = "32", **kw: Any):
    """``conf/method/<method>.yaml`` on ``x``'s device, attached to a trainer by one real iteration."""
    chans, size = x.shape[1], x.shape[2]
    data = {"num_classes": classes, "in_chans": chans, "image_size": size, "mean": [0.5] * chans, "std": [0.25] * chans}
    common = {"scheduler": {"name": "none"}, "optimizer": {"name": "sgd", "lr": 1e-3, "momentum": 0.9}}
    module = method_from_yaml(method, data, {"name": model, "weights": None}, **common, **kw)
    _attach(module, x, y, precision)
    return module


def sort_projection(x: torch.Tensor, delta: torch.Tensor, eps: float) -> torch.Tensor:
    """The reference's clipping-aware projection: Rauber & Bethge's sort-based rescaling (foolbox's copy)."""
    eta = l2_clipping_aware_rescaling(ep.astensor(x), ep.astensor(delta), eps).raw
    return torch.clamp(x + eta * delta, 0, 1)


class ReferenceIteration:
    """The reference's ANT iteration (game-of-noise ``train_noise_generator``, ``generate_noisy_data``,
    ``train_classifier``) on a copy of our classifier and a generator of the same architecture."""

    def __init__(self, ant: AdversarialNoiseTraining, folder: str) -> None:
        self.classifier = copy.deepcopy(ant.classifier)
        self.generator = copy.deepcopy(ant.generator)
        self.epsilon = float(ant.epsilon)
        self.folder = folder
        self.opt_generator = torch.optim.Adam(self.generator.parameters(), lr=1e-4)
        self.opt_classifier = torch.optim.SGD(self.classifier.parameters(), lr=1e-3, momentum=0.9)
        for k, snapshot in enumerate(ant.pool[:2]):  # the replay pool as files, one per epoch
            state = {**snapshot["params"], "epsilon": torch.tensor([snapshot["epsilon"]])}
            torch.save({k: v.cpu() for k, v in state.items()}, os.path.join(folder, f"Noise_model_epoch_{k}.pth"))

    def generator_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.classifier.eval()  # not frozen: the backward also computes the classifier's weight gradients
        loss = -F.cross_entropy(self.classifier(sort_projection(x, self.generator(x), self.epsilon)), y)
        self.opt_generator.zero_grad()
        loss.backward()
        self.opt_generator.step()

    def mixed_batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        data = x.clone()
        n = len(x)
        n_current, n_each = round(n * 0.3), round(n * 0.1)
        with torch.no_grad():
            data[:n_current] = sort_projection(x[:n_current], self.generator(x[:n_current]), self.epsilon)
            files = glob.glob(os.path.join(self.folder, "Noise_model*.pth"))
            random.shuffle(files)
            start = n_current
            for path in files[:2]:  # loaded from disk every iteration
                state = torch.load(path, map_location=x.device)
                generator = NoiseGenerator(channels=x.shape[1]).to(x.device)
                epsilon = float(state.pop("epsilon"))
                generator.load_state_dict(state)
                part = x[start : start + n_each]
                data[start : start + n_each] = sort_projection(part, generator(part), epsilon).detach()
                start += n_each
        return data, y

    def classifier_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.classifier.train()
        self.opt_classifier.zero_grad()  # also drops the weight gradients of the generator step
        F.cross_entropy(self.classifier(x), y).backward()
        self.opt_classifier.step()


def measure(args, device: torch.device, model: str, chans: int, size: int, classes: int, batch: int) -> dict:
    """Median seconds of GNT, the floor's extra part, and each part of our and the reference's ANT iteration."""
    torch.manual_seed(0)
    random.seed(0)
    x = torch.rand(batch, chans, size, size, device=device)
    y = torch.randint(classes, (batch,), device=device)
    gnt = build("gnt", model, x, y, classes, args.precision, sigma=0.5)
    ant = build("ant1x1", model, x, y, classes, args.precision, epsilon=size / 2, restart_at_start=False)
    for _ in range(2):  # two replay entries: the full 50/30/20 batch
        ant.pool.add(ant.generator, float(ant.epsilon), 0, "interval")
    ref = ReferenceIteration(ant, tempfile.mkdtemp(prefix="robustnoise-bench-replay-"))
    with autocast(args):
        mixed, ref_mixed = ant.mixed_batch(x, y), ref.mixed_batch(x, y)

    def floor_extra():  # classifier forward + input-gradient backward
        ant.classifier.eval().requires_grad_(False)
        xx = x.clone().requires_grad_()
        F.cross_entropy(ant.classifier(xx), y).backward()
        ant.classifier.train().requires_grad_(True)

    fns = {
        "gnt": lambda: gnt.classifier_step(gnt.perturb_batch(x, y), y),
        "floor_extra": floor_extra,
        "ant_gen": lambda: ant.generator_step(x, y),
        "ant_mix": lambda: ant.mixed_batch(x, y),
        "ant_cls": lambda: ant.classifier_step(*mixed),
        "ref_gen": lambda: ref.generator_step(x, y),
        "ref_mix": lambda: ref.mixed_batch(x, y),
        "ref_cls": lambda: ref.classifier_step(*ref_mixed),
    }
    with autocast(args):
        return interleaved(fns, device, repeats=args.repeats)


def run(args) -> str:
    device = configure(args)
    rows, shares = [], []
    for model, chans, size, classes, batch in CASES:
        t = measure(args, device, model, chans, size, classes, batch)
        ours = t["ant_gen"] + t["ant_mix"] + t["ant_cls"]
        theirs = t["ref_gen"] + t["ref_mix"] + t["ref_cls"]
        case = f"{model} {size}px b{batch}"
        floor = 1 + t["floor_extra"] / t["gnt"]
        rows.append([case, t["gnt"] * 1e3, ours / t["gnt"], floor, theirs / t["gnt"], ours / theirs])
        beyond = [(t["ant_gen"] - t["floor_extra"]) / ours, (t["ref_gen"] - t["floor_extra"]) / theirs]
        shares.append([case, *(t[f"ant_{p}"] / ours for p in ("gen", "mix", "cls")), beyond[0]])
        shares.append([case + " (reference)", *(t[f"ref_{p}"] / theirs for p in ("gen", "mix", "cls")), beyond[1]])
    return "\n\n".join(
        [
            f"device {args.device}, precision {args.precision}, {args.threads} thread(s), {args.repeats} repeats",
            table(["case", "GNT ms/it", "ANT / GNT", "floor / GNT", "reference / GNT", "ANT / reference"], rows),
            table(
                [
                    "shares of the iteration",
                    "(a) generator step",
                    "(b) mixed batch",
                    "(c) classifier step",
                    "(a) - floor",
                ],
                shares,
            ),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    print(run(parser(__doc__).parse_args(argv)))


if __name__ == "__main__":
    main()
