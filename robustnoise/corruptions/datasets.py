"""``CorruptedDataset``: the -C version of any dataset of ``(image, label, ...)`` items, generated on the fly.

Items are ordered like the released files (corruption-major, then severity, then image index); image ``i`` under
(corruption, severity) is seeded by ``sample_seeds(seed, i, corruption_id(corruption), severity)``, as the in-memory
evaluation, :class:`~robustnoise.corruptions.transforms.Corrupt` with ``index=i`` and ``make_c`` seed test index ``i``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import PIL.Image
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from robustnoise.corruptions.api import corrupt
from robustnoise.corruptions.fidelity import release_fidelity
from robustnoise.corruptions.presets import ALL_CORRUPTIONS, MNIST_C_CORRUPTIONS, SEVERITIES, check_severity
from robustnoise.corruptions.transforms import check_corruption, image_seeds
from robustnoise.utils.errors import ConfigError, RobustnoiseError

__all__ = ["CorruptedDataset", "resolve_sets", "to_float_image"]


def resolve_sets(
    corruptions: Sequence[str] | str | None, severities: Sequence[int] | int | None, preset: str
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Validated (corruptions, severities); ``None`` means all (implemented) corruptions / all severities."""
    if preset == "mnistc":
        if severities is None:
            severities = (1,)
    elif preset not in ("imagenet", "cifar", "tinyimagenet"):
        raise ConfigError(f"unknown corruption preset {preset!r}; valid: imagenet, cifar, tinyimagenet, mnistc")
    if corruptions is None:
        names = MNIST_C_CORRUPTIONS if preset == "mnistc" else ALL_CORRUPTIONS
    else:
        names = tuple([corruptions] if isinstance(corruptions, str) else corruptions)
        names = tuple(check_corruption(str(n), preset) for n in names)
    levels = tuple(SEVERITIES if severities is None else [severities] if isinstance(severities, int) else severities)
    levels = tuple(check_severity(s) for s in levels)
    if preset == "mnistc" and levels != (1,):
        raise ConfigError(f"MNIST-C has one fixed severity per corruption: use severities [1], got {list(levels)}")
    if len(set(names)) != len(names) or len(set(levels)) != len(levels):
        raise ConfigError("corruptions and severities must not repeat")
    if not names or not levels:
        raise ConfigError("need at least one corruption and one severity")
    return names, levels


def to_float_image(image: Any) -> Tensor:
    """A dataset image as a float CHW tensor in [0, 1] (float tensors as they are, uint8 tensors and PIL scaled)."""
    if isinstance(image, PIL.Image.Image):
        image = TF.pil_to_tensor(image)
    if not isinstance(image, Tensor):
        raise RobustnoiseError(f"dataset images must be tensors or PIL images, got {type(image).__name__}")
    image = image.as_subclass(Tensor)
    if image.dtype == torch.uint8:
        image = TF.to_dtype(image, torch.float32, scale=True)  # bit-identical to the clean pipelines' ToDtype
    elif not image.dtype.is_floating_point:
        raise RobustnoiseError(f"dataset images must be float in [0, 1] or uint8, got {image.dtype}")
    return image.contiguous()  # reductions may round differently on other memory layouts


class CorruptedDataset(Dataset):
    """The -C version of ``dataset``: ``len(dataset) x len(corruptions) x len(severities)`` items ``(image, label)``.

    Args:
        dataset: any map-style dataset whose items start with ``(image, label)``; images float (C, H, W) in [0, 1]
            (uint8 tensors and PIL images are scaled by 1/255).
        corruptions: names (default: all 19 implemented ImageNet-C corruptions, 15 benchmark + 4 holdouts, in
            canonical order; with ``preset='mnistc'`` the 15 MNIST-C corruptions).
        severities: 1..5 (default all; MNIST-C has one fixed severity, ``(1,)``).
        preset: severity table: ``imagenet``, ``cifar``, ``tinyimagenet`` or ``mnistc``.
        seed: base seed; item (corruption, severity, i) uses ``sample_seeds(seed, i, corruption_id, severity)``.
        fidelity: apply the release tail (uint8 truncation, and JPEG q85 for imagenet / tinyimagenet), so items
            match regenerated released files.

    Item ``k`` is image ``k % n`` under ``sets[k // n]`` with ``n = len(dataset)``; :meth:`index_of` and
    :meth:`locate` convert. With a DataLoader, a batch's items of the same set are corrupted in one call
    (``__getitems__``); the result equals item-by-item access.
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
        if preset == "mnistc" and severities == SEVERITIES:
            severities = None
        self.corruptions, self.severities = resolve_sets(corruptions, severities, preset)
        self.dataset = dataset
        self.preset = preset
        self.seed = int(seed)
        self.fidelity = bool(fidelity)
        self.num_images = len(dataset)  # type: ignore[arg-type]
        self.sets: list[tuple[str, int]] = [(c, s) for c in self.corruptions for s in self.severities]
        self._set_index = {key: k for k, key in enumerate(self.sets)}

    def __len__(self) -> int:
        return self.num_images * len(self.sets)

    def index_of(self, corruption: str, severity: int, i: int) -> int:
        """Position of image ``i`` under (``corruption``, ``severity``)."""
        key = (corruption, int(severity))
        if key not in self._set_index:
            raise RobustnoiseError(f"{corruption}/s{severity} is not one of this dataset's sets")
        if not 0 <= i < self.num_images:
            raise IndexError(f"image index {i} out of range for {self.num_images} images")
        return self._set_index[key] * self.num_images + int(i)

    def locate(self, index: int) -> tuple[str, int, int]:
        """(corruption, severity, image index) of item ``index``."""
        total = len(self)
        if not -total <= index < total:
            raise IndexError(f"index {index} out of range for {total} items")
        index %= total
        corruption, severity = self.sets[index // self.num_images]
        return corruption, severity, index % self.num_images

    def set_dataset(self, corruption: str, severity: int) -> Dataset:
        """The items of one (corruption, severity) as a dataset of ``num_images`` items."""
        start = self.index_of(corruption, severity, 0) if self.num_images else 0
        return torch.utils.data.Subset(self, range(start, start + self.num_images))

    def as_sets(self) -> list[tuple[str, int, Dataset]]:
        """``[(corruption, severity, dataset)]`` like :func:`robustnoise.data.released_c.released_c_sets` (e.g. for
        the ``released=`` argument of :class:`robustnoise.eval.suite.CorruptionSuite`)."""
        return [(c, s, self.set_dataset(c, s)) for c, s in self.sets]

    def _corrupt(self, images: Tensor, name: str, severity: int, indices: Sequence[int]) -> Tensor:
        seeds = image_seeds(self.seed, torch.as_tensor(list(indices), dtype=torch.int64), name, severity)
        out = corrupt(images, name, severity, preset=self.preset, seed=seeds.to(images.device))
        return release_fidelity(out, self.preset) if self.fidelity else out

    def _fetch(self, i: int) -> tuple[Tensor, Any]:
        item = self.dataset[i]
        return to_float_image(item[0]), item[1]

    def __getitem__(self, index: int) -> tuple[Tensor, Any]:
        name, severity, i = self.locate(index)
        image, label = self._fetch(i)
        return self._corrupt(image.unsqueeze(0), name, severity, [i])[0], label

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Tensor, Any]]:
        """Batched access (used by DataLoader): images of the same set and shape are corrupted together."""
        located = [self.locate(int(k)) for k in indices]
        fetched = {i: self._fetch(i) for i in sorted({i for _, _, i in located})}
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
