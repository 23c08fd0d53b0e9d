"""The clean training set plus pre-processed copies of it, drawn uniformly from the union (AdA §1.5 / App. A;
DeepAugment's ``train.py`` concatenates ImageNet with its ``EDSR/`` and ``CAE/`` ImageFolders, ref. §3)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import ConcatDataset, Dataset

from robustnoise.corruptions.make_c import class_folder_names
from robustnoise.data.base import ClassificationDataModule, WrappedDataModule
from robustnoise.utils.errors import ConfigError, DatasetNotFoundError


def folder_label_map(folders: Sequence[str], class_names: Sequence[str] | None, num_classes: int) -> dict[str, int]:
    """Clean label of every class folder, by clean class name or by index ``0..K-1`` (else a one-line error)."""
    folders = list(folders)
    if class_names is not None and sorted(folders) == sorted(class_names):
        return {name: list(class_names).index(name) for name in folders}
    if all(f.isdigit() for f in folders) and sorted(int(f) for f in folders) == list(range(num_classes)):
        return {f: int(f) for f in folders}
    shown = ", ".join(folders[:3]) + (", ..." if len(folders) > 3 else "")
    expected = f"the clean class names ({', '.join(list(class_names)[:3])}, ...) or " if class_names else ""
    raise DatasetNotFoundError(
        f"class folders do not match the clean data: found {len(folders)} ({shown}); "
        f"expected {expected}indices 0..{num_classes - 1}"
    )


class _Union(ConcatDataset):
    """Concatenated sources as plain tensor images and int labels, so default collation works."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = super().__getitem__(index)[:2]
        return image.as_subclass(torch.Tensor), int(label)


class ExtraSourceDataModule(WrappedDataModule):
    """The clean training set and one ImageFolder per ``roots`` entry, resized to ``resize`` (EDSR outputs: 4x)."""

    name = "extra_source"
    layout = "<root>/<class>/*.{png,JPEG} (or <root>/train/<class>/*) with the clean training set's class folders"

    def __init__(
        self, clean: ClassificationDataModule, roots: Sequence[str], resize: int | None = None, **wrapped: Any
    ) -> None:
        super().__init__(clean, **wrapped)
        if not roots:
            raise ConfigError("data.roots must list at least one folder of processed training images")
        self.roots = [Path(r) for r in ([roots] if isinstance(roots, str) else roots)]
        self.resize = int(resize) if resize else None
        self.name = f"{clean.name}+extra"
        self.extra_sets: list[Dataset] = []

    def _folder(self, root: Path) -> Dataset:
        """The ImageFolder of ``root`` (or ``root/train``), its targets mapped to the clean labels."""
        if (root / "train").is_dir() and len([p for p in root.iterdir() if p.is_dir()]) != self.num_classes:
            root = root / "train"
        folder = self.image_folder(root, self.resize)
        try:
            label_of = folder_label_map(folder.classes, class_folder_names(self.clean), self.num_classes)
        except DatasetNotFoundError as err:
            raise DatasetNotFoundError(f"{root}: {err}") from None
        folder.samples = [(path, label_of[folder.classes[i]]) for path, i in folder.samples]
        folder.targets, folder.class_to_idx = [label for _, label in folder.samples], label_of
        return folder

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if stage not in (None, "fit"):
            return
        if not self.extra_sets:
            self.extra_sets = [self._folder(root) for root in self.roots]
        self.train_set = _Union([self.clean.train_set, *self.extra_sets])
