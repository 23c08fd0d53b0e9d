"""One AdA iteration divided by one vanilla iteration (same classifier, batch, machine, same run), with its split.

AdA iteration = random start + ``steps`` iterated-FGSM steps (EDSR forward + backward to beta, classifier forward +
input-gradient backward) + the final corrupted batch + SSIM guard + one classifier step; vanilla = one classifier step
on the clean batch. The EDSR share is measured by timing the same attack against a free classifier (global average
pool + linear): what remains is the classifier's part of the attack, the SSIM guard and the classifier step.
The paper's setting: EDSR-baseline x4 on 32 px CIFAR images, PreAct ResNet (here ResNet-18 to keep CPU runs short;
the PreAct ResNet-50 makes the classifier share larger).
Run: ``python -m benchmarks.ada_iteration [--device cuda] [--precision bf16-mixed]``.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.ant_iteration import build
from benchmarks.common import autocast, configure, interleaved, parser, table

EDSR_BASELINE_X4 = {"variant": "edsr_baseline", "scale": 4, "weights": None, "resize": "sr_then_down"}
CASES = [  # model, image size, classes, batch, per_example
    ("preact_resnet18", 32, 10, 8, True),
    ("preact_resnet18", 32, 10, 8, False),
]


def measure(args, device: torch.device, model: str, size: int, classes: int, batch: int, per_example: bool) -> dict:
    """Median seconds of a vanilla iteration, an AdA iteration and AdA's attack against a free classifier."""
    torch.manual_seed(0)
    x = torch.rand(batch, 3, size, size, device=device)
    y = torch.randint(classes, (batch,), device=device)
    vanilla = build("vanilla", model, x, y, classes, args.precision)
    ada = build(
        "ada", model, x, y, classes, args.precision, corruption_net=EDSR_BASELINE_X4, p_clean=0.0,
        per_example=per_example,
    )  # fmt: skip
    free = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, classes)).to(device)

    def edsr_only():  # the attack against a classifier that costs nothing
        classifier, ada.classifier = ada.classifier, free
        try:
            ada.attack(x, y)
        finally:
            ada.classifier = classifier

    fns = {
        "vanilla": lambda: vanilla.classifier_step(x, y),
        "ada": lambda: ada.classifier_step(ada.adversarial_stage(x, y), y),
        "edsr": edsr_only,
    }
    with autocast(args):
        return interleaved(fns, device, repeats=args.repeats)


def run(args) -> str:
    device = configure(args)
    rows = []
    for model, size, classes, batch, per_example in CASES:
        t = measure(args, device, model, size, classes, batch, per_example)
        beta = "per image" if per_example else "per batch"
        rows.append(
            [f"{model} {size}px b{batch}, beta {beta}", t["vanilla"] * 1e3, t["ada"] * 1e3, t["ada"] / t["vanilla"],
             t["edsr"] / t["ada"], 1 - t["edsr"] / t["ada"]]
        )  # fmt: skip
    return "\n\n".join(
        [
            f"device {args.device}, precision {args.precision}, {args.threads} thread(s), {args.repeats} repeats",
            table(["case", "vanilla ms/it", "AdA ms/it", "AdA / vanilla", "EDSR share", "classifier + rest"], rows),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    print(run(parser(__doc__, repeats=3).parse_args(argv)))


if __name__ == "__main__":
    main()
