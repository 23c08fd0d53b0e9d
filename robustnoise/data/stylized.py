"""Stylized images paired with a clean DataModule (ANT+SIN; Geirhos et al. 2019 Stylized-ImageNet layout).

The stylized set is a pre-stylized ImageFolder, ``<stylized_root>/train/<class>/*`` with the same class folders as
the clean training set (Stylized-ImageNet: the 1000 ImageNet wnids). Training batches are dicts
``{"clean": (x, y), "stylized": (x_s, y_s)}``; validation and test are the clean DataModule's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.utilities import CombinedLoader
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import v2

from robustnoise.data.base import ClassificationDataModule


class StylizedDataModule(ClassificationDataModule):
    """A clean DataModule plus a stylized ImageFolder of the same classes, zipped batch by batch (as the reference)."""

    name = "stylized"
    layout = "<stylized_root>/train/<class>/*.{JPEG,png} with the clean training set's class folders"

    def __init__(
        self,
        clean: ClassificationDataModule,
        stylized_root: str,
        stylized_batch_size: int | None = None,
        corruption_preset: str | None = None,
    ) -> None:
        super().__init__(
            batch_size=clean.batch_size,
            eval_batch_size=clean.eval_batch_size,
            num_workers=clean.num_workers,
            corruption_preset=corruption_preset or clean.corruption_preset,
        )
        self.clean = clean
        self.stylized_root = Path(stylized_root)
        self.stylized_batch_size = stylized_batch_size or clean.batch_size
        self.name = f"{clean.name}+stylized"
        for attr in ("num_classes", "in_chans", "image_size", "mean", "std"):
            setattr(self, attr, getattr(clean, attr))
        self.stylized_set: datasets.ImageFolder | None = None

    def _transform(self) -> v2.Transform:
        if hasattr(self.clean, "train_transform"):
            return self.clean.train_transform()
        return v2.Compose([v2.Resize((self.image_size, self.image_size)), v2.ToDtype(torch.float32, scale=True)])

    def _load(self, path: str) -> torch.Tensor:
        from PIL import Image

        with Image.open(path) as img:
            return v2.functional.to_image(img.convert("L" if self.in_chans == 1 else "RGB"))

    def setup(self, stage: str | None = None) -> None:
        self.clean.setup(stage)
        self.train_set, self.val_set, self.test_set = self.clean.train_set, self.clean.val_set, self.clean.test_set
        if self.stylized_set is not None or stage not in (None, "fit"):
            return
        folder = self.stylized_root / "train"
        if not folder.is_dir():
            raise self.not_found(folder)
        try:
            self.stylized_set = datasets.ImageFolder(str(folder), transform=self._transform(), loader=self._load)
        except (FileNotFoundError, RuntimeError) as err:
            raise self.not_found(folder, str(err).splitlines()[0]) from err
        if len(self.stylized_set.classes) != self.num_classes:
            raise self.not_found(folder, f"{len(self.stylized_set.classes)} class folders, expected {self.num_classes}")

    def train_dataloader(self) -> Any:
        if self.stylized_set is None:
            self.setup("fit")
        stylized = DataLoader(
            self.stylized_set,
            batch_size=self.stylized_batch_size,
            shuffle=True,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            drop_last=True,
        )
        return CombinedLoader({"clean": self.clean.train_dataloader(), "stylized": stylized}, mode="min_size")

    def val_dataloader(self) -> DataLoader:
        return self.clean.val_dataloader()
