"""``CorruptedDataset``: the -C version of any dataset of ``(image, label, ...)`` items, generated on the fly.

Items are ordered like the released files (corruption-major, then severity, then image index); image ``i`` is seeded
by ``sample_seeds(seed, i, corruption_id(corruption), severity)``, as in the in-memory evaluation, ``make_c`` and
:class:`~robustnoise.corruptions.transforms.Corrupt` with ``index=i``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from robustnoise.corruptions.api import corrupt
from robustnoise.corruptions.fidelity import release_fidelity
from robustnoise.corruptions.presets import ALL_CORRUPTIONS, MNIST_C_CORRUPTIONS, PRESETS, SEVERITIES, check_severity
from robustnoise.corruptions.transforms import check_corruption, image_seeds, to_float_image
from robustnoise.utils.errors import ConfigError, RobustnoiseError

__all__ = ["CorruptedDataset", "resolve_sets"]


def resolve_sets(
    corruptions: Sequence[str] | str | None, severities: Sequence[int] | int | None, preset: str
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Validated (corruptions, severities); ``None`` means all corruptions / all severities (MNIST-C: its one level,
    also for the default ``SEVERITIES``)."""
    if preset == "mnistc":
        severities = (1,) if severities is None or severities == SEVERITIES else severities
    elif preset not in PRESETS:
        raise ConfigError(f"unknown corruption preset {preset!r}; valid: imagenet, cifar, tinyimagenet, mnistc")
    if isinstance(corruptions, str):
        corruptions = [corruptions]
    default = MNIST_C_CORRUPTIONS if preset == "mnistc" else ALL_CORRUPTIONS
    names = tuple(check_corruption(str(n), preset) for n in (default if corruptions is None else corruptions))
    levels = SEVERITIES if severities is None else (severities,) if isinstance(severities, int) else severities
    levels = tuple(check_severity(s) for s in levels)
    if preset == "mnistc" and levels != (1,):
        raise ConfigError(f"MNIST-C has one fixed severity per corruption: use severities [1], got {list(levels)}")
    if len(set(names)) != len(names) or len(set(levels)) != len(levels):
        raise ConfigError("corruptions and severities must not repeat")
    if not names or not levels:
        raise ConfigError("need at least one corruption and one severity")
    return names, levels


class CorruptedDataset(Dataset):
    """The -C version of ``dataset``: ``len(dataset) x len(corruptions) x len(severities)`` items ``(image, label)``.

    Args:
        dataset: any map-style dataset whose items start with ``(image, label)``; images float (C, H, W) in [0, 1]
            (uint8 tensors and PIL images are scaled by 1/255).
        corruptions, severities: default all 19 ImageNet-C corruptions (``mnistc``: its 15) and all 5 severities.
        preset: severity table: ``imagenet``, ``cifar``, ``tinyimagenet`` or ``mnistc``.
        seed: base seed (module docstring).
        fidelity: apply the release tail (:func:`~robustnoise.corruptions.fidelity.release_fidelity`).

    Item ``k`` is image ``k % n`` under ``sets[k // n]`` (:meth:`index_of` and :meth:`locate` convert). A DataLoader
    batch's items of one set are corrupted in one call (``__getitems__``), equal to item-by-item access.
    """

    def __init__(
        self,
        dataset: Dataset,
        corruptions: Sequence[str] | None = None,
        severities: Sequence[int] | None = SEVERITIES,
        preset: str = "imagenet",
        seed: int = 0,
        fidelity: bool = False,
    ) -> None:
        self.corruptions, self.severities = resolve_sets(corruptions, severities, preset)
        self.dataset = dataset
        self.preset = preset
        self.seed = int(seed)
        self.fidelity = bool(fidelity)
        self.num_images = len(dataset)  # type: ignore[arg-type]
        self.sets: list[tuple[str, int]] = [(c, s) for c in self.corruptions for s in self.severities]

    def __len__(self) -> int:
        return self.num_images * len(self.sets)

    def index_of(self, corruption: str, severity: int, i: int) -> int:
        """Position of image ``i`` under (``corruption``, ``severity``)."""
        if (corruption, severity) not in self.sets:
            raise RobustnoiseError(f"{corruption}/s{severity} is not one of this dataset's sets")
        if not 0 <= i < self.num_images:
            raise IndexError(f"image index {i} out of range for {self.num_images} images")
        return self.sets.index((corruption, severity)) * self.num_images + int(i)

    def locate(self, index: int) -> tuple[str, int, int]:
        """(corruption, severity, image index) of item ``index``."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        corruption, severity = self.sets[index % len(self) // self.num_images]
        return corruption, severity, index % len(self) % self.num_images

    def as_sets(self) -> list[tuple[str, int, Dataset]]:
        """``[(corruption, severity, dataset)]`` like :func:`robustnoise.data.released_c.released_c_sets` (e.g. for
        ``CorruptionSuite(released=...)``)."""
        n = self.num_images
        return [(c, s, Subset(self, range(k * n, (k + 1) * n))) for k, (c, s) in enumerate(self.sets)]

    def _corrupt(self, images: Tensor, name: str, severity: int, indices: Sequence[int]) -> Tensor:
        seeds = image_seeds(self.seed, torch.as_tensor(list(indices), dtype=torch.int64), name, severity)
        out = corrupt(images, name, severity, preset=self.preset, seed=seeds.to(images.device))
        return release_fidelity(out, self.preset) if self.fidelity else out

    def __getitem__(self, index: int) -> tuple[Tensor, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Tensor, Any]]:
        """Batched access (used by DataLoader): images of the same set and shape are corrupted together."""
        located = [self.locate(int(k)) for k in indices]
        fetched = {}
        for i in sorted({i for _, _, i in located}):
            item = self.dataset[i]
            fetched[i] = (to_float_image(item[0]), item[1])
        groups: dict[tuple[str, int, tuple[int, ...], torch.dtype], list[int]] = {}
        for pos, (name, severity, i) in enumerate(located):
            groups.setdefault((name, severity, tuple(fetched[i][0].shape), fetched[i][0].dtype), []).append(pos)
        out: list[Any] = [None] * len(located)
        for (name, severity, _, _), positions in groups.items():
            images = [located[p][2] for p in positions]
            corrupted = self._corrupt(torch.stack([fetched[i][0] for i in images]), name, severity, images)
            for k, (p, i) in enumerate(zip(positions, images)):
                out[p] = (corrupted[k], fetched[i][1])
        return out

    def __repr__(self) -> str:
        return (
            f"CorruptedDataset({self.num_images} images x {len(self.corruptions)} corruptions x "
            f"{len(self.severities)} severities, preset={self.preset!r}, seed={self.seed}, fidelity={self.fidelity})"
        )
