"""Shared DataModule plumbing: images in [0, 1], test batches carry dataset indices (for per-sample seeds)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from robustnoise.data.resumable import resumable_loader
from robustnoise.utils.errors import ConfigError, DatasetNotFoundError


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
    """Base for the clean datasets. Subclasses set the class attributes and build the three splits in ``setup``.

    Attributes every subclass defines: ``name``, ``num_classes``, ``in_chans``, ``image_size``, ``mean``, ``std``
    (the statistics the model normalises with, inside the model), ``layout`` (the on-disk layout, for errors).
    """

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
        pin_memory: bool | None = None,
        corruption_preset: str = "imagenet",
    ) -> None:
        super().__init__()
        for key, value, low in (
            ("batch_size", batch_size, 1),
            ("eval_batch_size", eval_batch_size, 1),
            ("num_workers", num_workers, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"data.{key} must be an integer >= {low}, got {value!r}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.corruption_preset = corruption_preset
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def not_found(self, path: Any, detail: str = "") -> DatasetNotFoundError:
        """The one-line error for a missing or malformed dataset folder."""
        extra = f" ({detail})" if detail else ""
        return DatasetNotFoundError(f"{self.name} not found at {path}{extra}; expected layout: {self.layout}")

    def _loader(self, split: str, shuffle: bool, batch_size: int) -> DataLoader:
        if getattr(self, split) is None:
            self.setup("fit" if split != "test_set" else "test")
        dataset = getattr(self, split) if split != "test_set" else self.test_dataset()
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled by (seed, epoch, rank) and resumable mid-epoch (``robustnoise.data.resumable``)."""
        if self.train_set is None:
            self.setup("fit")
        # fresh workers every epoch: their seeds come from the loader's per-epoch generator (exact resume at epoch
        # boundaries; persistent workers would keep epoch 0's seeds)
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        return self.resumable_loader(self.train_set, self.batch_size, seed, persistent_workers=False)

    def resumable_loader(self, dataset: Dataset, batch_size: int, seed: int, **kwargs: Any) -> DataLoader:
        """A loader shuffled by (seed, epoch, rank) and resumable mid-epoch, on this trainer's ranks."""
        trainer = self.trainer
        return resumable_loader(
            dataset,
            batch_size=batch_size,
            seed=seed,
            num_replicas=trainer.world_size if trainer is not None else 1,
            rank=trainer.global_rank if trainer is not None else 0,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            **kwargs,
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader("val_set", shuffle=False, batch_size=self.eval_batch_size)

    def test_dataset(self, max_images: int | None = None) -> IndexedDataset:
        """The test split as ``(image, label, index)`` items, optionally only its first ``max_images``."""
        if self.test_set is None:
            self.setup("test")
        assert self.test_set is not None
        dataset: Dataset = self.test_set
        if max_images is not None and max_images < len(dataset):  # type: ignore[arg-type]
            dataset = Subset(dataset, range(max_images))
        return IndexedDataset(dataset)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test_set", shuffle=False, batch_size=self.eval_batch_size)

    def info(self) -> dict[str, Any]:
        """What the model needs to know about the data (plain values, saved with the checkpoint)."""
        return {
            "num_classes": self.num_classes,
            "in_chans": self.in_chans,
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
        }


class WrappedDataModule(ClassificationDataModule):
    """A DataModule that adds training images to a clean one (stylized pairs, extra sources).

    It has the clean data's classes, image size and statistics; loader sizes given on the wrapper apply to the clean
    data, which loads the batches. Validation and test are the clean data's.
    """

    def __init__(
        self,
        clean: ClassificationDataModule,
        corruption_preset: str | None = None,
        batch_size: int | None = None,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
    ) -> None:
        for key, value in (
            ("batch_size", batch_size),
            ("eval_batch_size", eval_batch_size),
            ("num_workers", num_workers),
        ):
            if value is not None:
                setattr(clean, key, int(value))
        super().__init__(
            batch_size=clean.batch_size,
            eval_batch_size=clean.eval_batch_size,
            num_workers=clean.num_workers,
            corruption_preset=corruption_preset or clean.corruption_preset,
        )
        self.clean = clean
        for attr in ("num_classes", "in_chans", "image_size", "mean", "std"):
            setattr(self, attr, getattr(clean, attr))

    def image_folder(self, root: Path, resize: int | None = None) -> ImageFolder:
        """An ImageFolder of training images with the clean data's channels and training transform (tensor data
        without one, the digits: resized to the clean size), after an optional ``resize`` + centre crop."""
        if not root.is_dir():
            raise self.not_found(root)
        steps: list[v2.Transform] = [v2.Resize(resize), v2.CenterCrop(resize)] if resize else []
        if hasattr(self.clean, "train_transform"):
            steps.append(self.clean.train_transform())
        else:
            steps += [v2.Resize((self.image_size, self.image_size)), v2.ToDtype(torch.float32, scale=True)]
        try:
            return ImageFolder(str(root), transform=v2.Compose(steps), loader=self._load)
        except (FileNotFoundError, RuntimeError) as err:
            raise self.not_found(root, str(err).splitlines()[0]) from err

    def _load(self, path: str) -> torch.Tensor:
        from PIL import Image

        with Image.open(path) as img:
            return v2.functional.to_image(img.convert("L" if self.in_chans == 1 else "RGB"))
