"""Noise corruptions (counter-based RNG) vs the imagecorruptions oracle: ms per image on the same images, same run.

Both sides run on one CPU thread: ours as one batched ``corrupt`` call (ImageNet parameters, seed 0), the oracle
(``imagecorruptions.corrupt``, numpy) image by image on the same uint8 images. Times are medians of repeated runs of
process CPU time, which other processes on a shared machine hardly disturb; ``torch.randn`` of the same size is a
second same-run baseline. Run: ``python -m benchmarks.rng_speed [--severities 1 3 5] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import median_cpu_time, table
from robustnoise.corruptions import corrupt

NOISE = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")
CASES = ((224, 64), (32, 256))  # (image size, batch)


def _sources() -> list[torch.Tensor]:
    """Natural RGB photographs (scikit-image sample data) as float (3, H, W); smooth random images if unavailable."""
    try:
        from skimage import data

        images = [getattr(data, name)() for name in ("astronaut", "coffee", "chelsea", "rocket")]
        return [torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1).float() / 255 for im in images]
    except Exception:  # noqa: BLE001 - any failure (missing package or data): fall back to synthetic images
        gen = torch.Generator().manual_seed(0)
        coarse = torch.rand(4, 3, 8, 8, generator=gen)
        return list(F.interpolate(coarse, size=(256, 256), mode="bicubic", align_corners=False).clamp(0, 1))


def make_images(size: int, batch: int) -> tuple[torch.Tensor, list[np.ndarray]]:
    """``batch`` random crops (with flips) of the sources, resized to ``size``: a float batch and the uint8 images."""
    gen = torch.Generator().manual_seed(size)
    sources = _sources()
    crops = []
    for i in range(batch):
        src = sources[i % len(sources)]
        side = int(min(src.shape[1:]) * (0.5 + 0.5 * float(torch.rand((), generator=gen))))
        top = int(torch.randint(0, src.shape[1] - side + 1, (), generator=gen))
        left = int(torch.randint(0, src.shape[2] - side + 1, (), generator=gen))
        crop = src[:, top : top + side, left : left + side]
        if bool(torch.rand((), generator=gen) < 0.5):
            crop = crop.flip(-1)
        crops.append(F.interpolate(crop[None], size=(size, size), mode="bilinear", antialias=True)[0])
    uint8 = (torch.stack(crops).clamp(0, 1) * 255).round().to(torch.uint8)
    return uint8.float() / 255, [np.ascontiguousarray(im.permute(1, 2, 0).numpy()) for im in uint8]


def _oracle(arrays: list[np.ndarray], name: str, severity: int) -> Callable[[], object]:
    import imagecorruptions

    return lambda: [imagecorruptions.corrupt(a, severity=severity, corruption_name=name) for a in arrays]


def run(severities: Sequence[int] = (3,), repeats: int = 5) -> str:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = []
        for size, batch in CASES:
            images, arrays = make_images(size, batch)
            randn = median_cpu_time(partial(torch.randn, images.shape), repeats) / batch * 1e3
            rows.append((f"{size}px x{batch}", "torch.randn", "-", randn, "-", "-"))
            for name in NOISE:
                for severity in severities:
                    ours = median_cpu_time(partial(corrupt, images, name, severity, "imagenet", seed=0), repeats)
                    oracle = median_cpu_time(_oracle(arrays, name, severity), max(1, repeats // 2))
                    ours, oracle = ours / batch * 1e3, oracle / batch * 1e3
                    rows.append((f"{size}px x{batch}", name, severity, ours, oracle, f"{oracle / ours:.1f}x"))
        header = ("images", "corruption", "severity", "ours ms/img", "oracle ms/img", "oracle/ours")
        return table(header, rows)
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--severities", type=int, nargs="+", default=[3])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(run(args.severities, args.repeats))


if __name__ == "__main__":
    main()
