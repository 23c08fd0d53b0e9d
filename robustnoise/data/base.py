"""Shared DataModule plumbing: images in [0, 1], test batches carry dataset indices (for per-sample seeds)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from robustnoise.data.resumable import ResumableDataLoader
from robustnoise.utils.errors import ConfigError, DatasetNotFoundError, UnreadableImageError
from robustnoise.utils.seeding import run_seed

_INFO_KEYS = ("num_classes", "in_chans", "image_size", "mean", "std")  # what the model needs to know about the data
TO_FLOAT = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])


def load_image(path: str, mode: str = "RGB") -> torch.Tensor:
    """The uint8 image of ``path`` in PIL ``mode``; an unreadable file is one :class:`UnreadableImageError` line."""
    try:
        with Image.open(path) as img:
            return v2.functional.to_image(img.convert(mode))
    except (OSError, SyntaxError, ValueError) as err:  # PIL: UnidentifiedImageError (an OSError), truncated data
        raise UnreadableImageError(
            f"cannot read image {path} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'empty'}); "
            "remove or replace the file, or set data.skip_unreadable=true to skip such files with a warning"
        ) from err


class IndexedDataset(Dataset):
    """Wrap a dataset so items become ``(image, label, index)``: corruptions are seeded per test index."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        image, label = self.dataset[index]
        return image, label, index


class ClassificationDataModule(pl.LightningDataModule):
    """Base for the clean datasets: subclasses set ``name``, ``layout`` (for errors), the :data:`_INFO_KEYS`."""

    name: str = "dataset"
    num_classes: int
    in_chans: int
    image_size: int
    mean: Sequence[float]
    std: Sequence[float]
    layout: str = ""

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        corruption_preset: str = "imagenet",
    ) -> None:
        super().__init__()
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        for key, low in (("batch_size", 1), ("eval_batch_size", 1), ("num_workers", 0)):
            if not isinstance(value := getattr(self, key), int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"data.{key} must be an integer >= {low}, got {value!r}")
        self.pin_memory = torch.cuda.is_available()
        self.corruption_preset = corruption_preset
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def not_found(self, path: Any, detail: str = "") -> DatasetNotFoundError:
        """The one-line error for a missing or malformed dataset folder."""
        extra = f" ({detail})" if detail else ""
        return DatasetNotFoundError(f"{self.name} not found at {path}{extra}; expected layout: {self.layout}")

    def train_dataloader(self) -> DataLoader:
        """Shuffled by (seed, epoch, rank) and resumable mid-epoch (``robustnoise.data.resumable``)."""
        if self.train_set is None:
            self.setup("fit")
        return self.resumable_loader(self.train_set, self.batch_size, run_seed())

    def resumable_loader(self, dataset: Dataset, batch_size: int, seed: int, **kwargs: Any) -> DataLoader:
        """A loader shuffled by (seed, epoch, rank) and resumable mid-epoch, on this trainer's ranks."""
        ranks = (self.trainer.world_size, self.trainer.global_rank) if self.trainer is not None else (1, 0)
        workers = {"num_workers": self.num_workers, "pin_memory": self.pin_memory}
        return ResumableDataLoader(dataset, batch_size, seed, *ranks, **workers, **kwargs)

    def _eval_loader(self, dataset: Dataset) -> DataLoader:
        workers = {"num_workers": self.num_workers, "persistent_workers": self.num_workers > 0}
        return DataLoader(dataset, self.eval_batch_size, pin_memory=self.pin_memory, **workers)

    def val_dataloader(self) -> DataLoader:
        if self.val_set is None:
            self.setup("fit")
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_dataset())

    def test_dataset(self, max_images: int | None = None) -> IndexedDataset:
        """The test split as ``(image, label, index)`` items, optionally only its first ``max_images``."""
        if self.test_set is None:
            self.setup("test")
        dataset: Dataset = self.test_set
        if max_images is not None and max_images < len(dataset):  # type: ignore[arg-type]
            dataset = Subset(dataset, range(max_images))
        return IndexedDataset(dataset)

    def info(self) -> dict[str, Any]:
        """What the model needs to know about the data (plain values, saved with the checkpoint)."""
        return {key: getattr(self, key) for key in _INFO_KEYS} | {"mean": list(self.mean), "std": list(self.std)}


class WrappedDataModule(ClassificationDataModule):
    """A clean DataModule plus training images (stylized pairs, extra sources); info, val and test: the clean's."""

    def __init__(
        self,
        clean: ClassificationDataModule,
        corruption_preset: str | None = None,
        batch_size: int | None = None,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
    ) -> None:
        sizes = {"batch_size": batch_size, "eval_batch_size": eval_batch_size, "num_workers": num_workers}
        for key, value in sizes.items():
            setattr(clean, key, getattr(clean, key) if value is None else int(value))
        preset = corruption_preset or clean.corruption_preset
        super().__init__(clean.batch_size, clean.eval_batch_size, clean.num_workers, corruption_preset=preset)
        self.clean = clean
        for attr in _INFO_KEYS:
            setattr(self, attr, getattr(clean, attr))

    def setup(self, stage: str | None = None) -> None:
        """The clean splits; subclasses add their training images for ``fit``."""
        self.clean.setup(stage)
        self.train_set, self.val_set, self.test_set = self.clean.train_set, self.clean.val_set, self.clean.test_set

    def image_folder(self, root: Path, resize: int | None = None) -> ImageFolder:
        """An ImageFolder of training images in the clean data's channels, size and training transform."""
        steps: list[v2.Transform] = [v2.Resize(resize), v2.CenterCrop(resize)] if resize else []
        if hasattr(self.clean, "train_transform"):
            steps.append(self.clean.train_transform())
        else:
            steps += [v2.Resize((self.image_size, self.image_size)), TO_FLOAT]
        try:
            loader = partial(load_image, mode="L" if self.in_chans == 1 else "RGB")
            return ImageFolder(str(root), transform=v2.Compose(steps), loader=loader)
        except (FileNotFoundError, RuntimeError) as err:
            raise self.not_found(root, str(err).splitlines()[0]) from err
