"""One AdA iteration divided by one vanilla iteration (same classifier, batch, machine, same run), with its split.

AdA iteration = random start + ``steps`` iterated-FGSM steps (EDSR forward + backward to beta, classifier forward +
input-gradient backward) + the final corrupted batch + SSIM guard + one classifier step; vanilla = one classifier step
on the clean batch. The EDSR share is measured by timing the same attack against a free classifier (global average
pool + linear): what remains is the classifier's part of the attack, the SSIM guard and the classifier step.
The paper's setting: EDSR-baseline x4 on 32 px CIFAR images, PreAct ResNet (here ResNet-18 to keep CPU runs short;
the PreAct ResNet-50 makes the classifier share larger). Run: ``python -m benchmarks.ada_iteration``.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.ant_iteration import build
from benchmarks.common import median_time, table

EDSR_BASELINE_X4 = {"variant": "edsr_baseline", "scale": 4, "weights": None, "resize": "sr_then_down"}
CASES = [  # model, image size, classes, batch, per_example
    ("preact_resnet18", 32, 10, 8, True),
    ("preact_resnet18", 32, 10, 8, False),
]


def run() -> str:
    torch.set_num_threads(1)
    rows = []
    for model, size, classes, batch, per_example in CASES:
        torch.manual_seed(0)
        x = torch.rand(batch, 3, size, size)
        y = torch.randint(classes, (batch,))
        vanilla = build("vanilla", model, x, y, classes)
        ada = build(
            "ada", model, x, y, classes, corruption_net=EDSR_BASELINE_X4, p_clean=0.0,
            per_example=per_example,
        )  # fmt: skip

        def vanilla_iteration(vanilla=vanilla, x=x, y=y):
            vanilla.classifier_step(x, y)

        def ada_iteration(ada=ada, x=x, y=y):
            ada.classifier_step(ada.adversarial_stage(x, y), y)

        free = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, classes))

        def edsr_only(ada=ada, x=x, y=y, free=free):  # the attack against a classifier that costs nothing
            classifier, ada.classifier = ada.classifier, free
            try:
                ada.attack(x, y)
            finally:
                ada.classifier = classifier

        t_vanilla = median_time(vanilla_iteration, repeats=3, warmup=1)
        t_ada = median_time(ada_iteration, repeats=3, warmup=1)
        t_edsr = median_time(edsr_only, repeats=3, warmup=1)
        beta = "per image" if per_example else "per batch"
        rows.append(
            [f"{model} {size}px b{batch}, beta {beta}", t_vanilla * 1e3, t_ada * 1e3, t_ada / t_vanilla,
             t_edsr / t_ada, 1 - t_edsr / t_ada]
        )  # fmt: skip
    return table(["case", "vanilla ms/it", "AdA ms/it", "AdA / vanilla", "EDSR share", "classifier + rest"], rows)


if __name__ == "__main__":
    print(run())
