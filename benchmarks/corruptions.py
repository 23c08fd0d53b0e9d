"""Corruption throughput: ``robustnoise.corruptions.corrupt`` on batches vs the ``imagecorruptions`` oracle per image.

Same photographs for both (scikit-image sample images, square crops at several offsets, resized with PIL bilinear),
CPU, one thread (torch, OpenCV), warm (one untimed call per corruption and severity first: texture loading, numba JIT),
median of repeated runs, the repetitions of ours and the oracle alternating (so that a change of load on a shared
machine hits both). Ours: ``corrupt(batch, name, severity, preset)`` on a float32
batch of 64 images at 224 px and 256 at 32 px. Oracle: ``imagecorruptions.corrupt(uint8 HWC image, ...)``
(``imagecorruptions-imaug``, which uses the ImageNet-C parameters at every size) on fewer images (8 at 224 px, 64 at
32 px), scaled to images per second. ``preset`` is ``imagenet`` at both sizes by default, so both sides do the same
work; ``--preset32 cifar`` times the CIFAR-10-C table instead. Corruptions not registered in ``CORRUPTION_FNS`` are
skipped (and listed). ``--clock cpu`` times with the process's CPU time instead of the wall clock: on a shared,
loaded machine it does not count the time the process waits for a core (other processes still share the caches).
Also reported: the float -> uint8 quantisation (``make_c``'s real cost on top of the table) and the share of our time
spent in torch's random-number kernels (one profiled pass over every corruption and severity).
Run: ``python -m benchmarks.corruptions [--quick] [--detail] [--clock cpu] [--no-rng]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks.common import table
from robustnoise.corruptions import ALL_CORRUPTIONS, CORRUPTION_FNS, SEVERITIES, corrupt
from robustnoise.corruptions.fidelity import quantize_uint8_truncate

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


@dataclass(frozen=True)
class Case:
    size: int
    batch: int
    oracle_images: int
    preset: str


FULL = (Case(224, 64, 8, "imagenet"), Case(32, 256, 64, "imagenet"))
QUICK = (Case(224, 16, 2, "imagenet"), Case(32, 64, 16, "imagenet"))


def photos(size: int, count: int) -> np.ndarray:
    """``count`` uint8 RGB images (count, size, size, 3): square crops of the sample photographs at a few offsets."""
    import skimage.data
    from PIL import Image

    sources = [getattr(skimage.data, name)() for name in PHOTOS]
    out = np.empty((count, size, size, 3), dtype=np.uint8)
    for k in range(count):
        photo = sources[k % len(sources)]
        variant = k // len(sources)
        h, w = photo.shape[:2]
        side = int(min(h, w) * (1.0 - 0.1 * (variant % 4)))  # 100 %, 90 %, 80 %, 70 % crops
        shift = (0.5 + 0.37 * (variant // 4)) % 1.0  # centred first, then other offsets
        top, left = int((h - side) * shift), int((w - side) * shift)
        crop = Image.fromarray(np.ascontiguousarray(photo[top : top + side, left : left + side]))
        out[k] = np.asarray(crop.resize((size, size), Image.BILINEAR))
    return out


def _oracle() -> Callable[..., np.ndarray] | None:
    try:
        import imagecorruptions
    except ImportError:
        return None
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass
    return imagecorruptions.corrupt


def measure(
    case: Case,
    names: Sequence[str],
    repeats: int,
    oracle: Callable[..., np.ndarray] | None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict:
    """Seconds per image for ours and the oracle, per (corruption, severity): after one warm-up call of each, the
    repetitions of ours and the oracle alternate (ours, oracle, ours, ...), so a change of machine load hits both."""
    images = photos(case.size, case.batch)
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    subset = images[: case.oracle_images]
    ours: dict[tuple[str, int], float] = {}
    theirs: dict[tuple[str, int], float] = {}
    for name in names:
        for severity in SEVERITIES:
            fns = {"ours": lambda: corrupt(batch, name, severity, preset=case.preset, seed=0)}  # noqa: B023
            if oracle is not None:
                fns["oracle"] = lambda: [oracle(im, severity=severity, corruption_name=name) for im in subset]  # noqa: B023
            times = _interleaved(fns, repeats, clock)
            ours[(name, severity)] = times["ours"] / case.batch
            if oracle is not None:
                theirs[(name, severity)] = times["oracle"] / len(subset)
    quantize = _interleaved({"q": lambda: quantize_uint8_truncate(batch)}, repeats, clock)["q"] / case.batch
    return {"ours": ours, "oracle": theirs, "quantize": quantize}


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int, clock: Callable[[], float]) -> dict[str, float]:
    """Median seconds of each function; one warm-up call each, then the repetitions in turn (A, B, A, B, ...)."""
    times: dict[str, list[float]] = {key: [] for key in fns}
    with warnings.catch_warnings(), np.errstate(all="ignore"):  # the oracle's spatter divides 0 by 0
        warnings.simplefilter("ignore")
        for rep in range(repeats + 1):
            for key, fn in fns.items():
                start = clock()
                fn()
                if rep:
                    times[key].append(clock() - start)
    return {key: statistics.median(t) for key, t in times.items()}


RNG_OPS = ("aten::normal_", "aten::uniform_", "aten::random_", "aten::poisson", "aten::bernoulli_", "aten::randperm")


def rng_share(case: Case, names: Sequence[str]) -> tuple[float, float]:
    """Seconds per image spent in torch's random-number kernels (:data:`RNG_OPS`, their self time under the
    profiler) and in total (the same calls without the profiler, whose per-op overhead would inflate it), over one
    call of every (corruption, severity) on the batch of ``case``; both wall time (the profiler's clock)."""
    batch = torch.from_numpy(photos(case.size, case.batch)).permute(0, 3, 1, 2).float().div_(255.0).contiguous()

    def run_all() -> float:
        start = time.perf_counter()
        for name in names:
            for severity in SEVERITIES:
                corrupt(batch, name, severity, preset=case.preset, seed=0)
        return time.perf_counter() - start

    run_all()  # warm (textures, tables)
    total = run_all()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        run_all()
    drawn = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in RNG_OPS) * 1e-6
    return drawn / case.batch, total / case.batch


def _rate(seconds: float) -> str:
    return f"{1.0 / seconds:,.0f}" if seconds > 0 else "inf"


def _ratio(value: float) -> str:
    return f"{value:.1f}x"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms"


def run(
    quick: bool = False,
    preset32: str = "imagenet",
    detail: bool = False,
    clock: str = "wall",
    threads: int = 1,
    rng: bool = True,
) -> str:
    torch.set_num_threads(threads)  # ours; the oracle stays per image on one thread, as the reference runs
    timer = {"wall": time.perf_counter, "cpu": time.process_time}[clock]
    cases = QUICK if quick else FULL
    cases = tuple(Case(c.size, c.batch, c.oracle_images, preset32 if c.size == 32 else c.preset) for c in cases)
    repeats = 1 if quick else 3
    names = [n for n in ALL_CORRUPTIONS if n in CORRUPTION_FNS]
    skipped = [n for n in ALL_CORRUPTIONS if n not in CORRUPTION_FNS]
    oracle = _oracle()
    results = {case: measure(case, names, repeats, oracle, timer) for case in cases}

    header = ["corruption"]
    for case in cases:
        header += [f"{case.size}px ours img/s", f"{case.size}px oracle img/s", f"{case.size}px oracle/ours"]
    rows = []
    for name in names:
        row: list[object] = [name]
        for case in cases:
            ours = statistics.fmean(results[case]["ours"][(name, s)] for s in SEVERITIES)
            row += [_rate(ours)]
            if oracle is not None:
                theirs = statistics.fmean(results[case]["oracle"][(name, s)] for s in SEVERITIES)
                row += [_rate(theirs), _ratio(theirs / ours)]
            else:
                row += ["-", "-"]
        rows.append(row)
    total: list[object] = [f"total per image, {len(names)}x5"]
    for case in cases:
        ours_total = sum(results[case]["ours"].values())
        total += [_ms(ours_total)]
        if oracle is not None:
            theirs_total = sum(results[case]["oracle"].values())
            total += [_ms(theirs_total), _ratio(theirs_total / ours_total)]
        else:
            total += ["-", "-"]
    rows.append(total)

    lines = [
        f"CPU, ours {threads} thread(s), oracle 1 thread; "
        "img/s = mean over severities 1-5 of the time per image, inverted; "
        + "; ".join(
            f"{c.size}px: ours batch {c.batch} ({c.preset}), oracle {c.oracle_images} images (imagenet params)"
            for c in cases
        )
        + f"; median of {repeats} interleaved repetitions after a warm-up call, {clock} clock"
        + (" (--quick)" if quick else ""),
        "last row: time to corrupt one image with every (corruption, severity), and the oracle/ours ratio",
        table(header, rows),
    ]
    if detail:
        detail_rows = []
        for name in names:
            for severity in SEVERITIES:
                row = [f"{name}/s{severity}"]
                for case in cases:
                    ours = results[case]["ours"][(name, severity)]
                    row += [_rate(ours)]
                    if oracle is not None:
                        theirs = results[case]["oracle"][(name, severity)]
                        row += [_rate(theirs), _ratio(theirs / ours)]
                    else:
                        row += ["-", "-"]
                detail_rows.append(row)
        lines += ["", "per severity:", table(header, detail_rows)]
    lines.append(
        "float -> uint8 quantisation (make_c, uint8 transforms; not in the table: the oracle returns floats): "
        + "; ".join(
            f"{c.size}px {_ms(results[c]['quantize'])} per image and call, "
            f"{_ms(results[c]['quantize'] * len(names) * len(SEVERITIES))} over {len(names)}x5"
            for c in cases
        )
    )
    if rng:
        shares = {c: rng_share(c, names) for c in cases}
        lines.append(
            "random-number kernels (torch.profiler self time of "
            + ", ".join(op.removeprefix("aten::") for op in RNG_OPS)
            + ", wall time): "
            + "; ".join(
                f"{c.size}px {_ms(drawn)} of {_ms(total)} per image over {len(names)}x5 ({drawn / total:.0%})"
                for c, (drawn, total) in shares.items()
            )
        )
    if skipped:
        lines.append(f"skipped (not registered in CORRUPTION_FNS yet): {', '.join(skipped)}")
    if oracle is None:
        lines.append("oracle skipped: imagecorruptions is not installed (pip install imagecorruptions-imaug==1.1.5)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images, one timed run (about 4x faster)")
    parser.add_argument("--preset32", choices=["imagenet", "cifar"], default="imagenet", help="our preset at 32 px")
    parser.add_argument("--detail", action="store_true", help="also print the per-severity table")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="wall time or process CPU time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for ours (the oracle runs on one)")
    parser.add_argument("--no-rng", action="store_true", help="skip the profile of the random-number kernels' share")
    args = parser.parse_args()
    print(run(args.quick, args.preset32, args.detail, args.clock, args.threads, rng=not args.no_rng))


if __name__ == "__main__":
    main()
