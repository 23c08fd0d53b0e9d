"""ImageNet and Tiny-ImageNet from their standard folder layouts (class index = position of the sorted wnid)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset
from torchvision import datasets
from torchvision.transforms import v2

from robustnoise.data.base import TO_FLOAT, ClassificationDataModule, load_image
from robustnoise.utils.errors import UnreadableImageError

log = logging.getLogger("robustnoise")


class _ImageFolder(datasets.ImageFolder):
    """ImageFolder whose unreadable files are a one-line error, or (``skip_unreadable``) replaced by the next one."""

    def __init__(self, root: str, transform: v2.Transform, skip_unreadable: bool = False) -> None:
        super().__init__(root, transform=transform, loader=load_image)
        self.skip_unreadable = skip_unreadable

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        for offset in range(len(self)):
            try:
                return super().__getitem__((index + offset) % len(self))
            except UnreadableImageError as err:
                if not self.skip_unreadable:
                    raise
                log.warning("skipped: %s", str(err).split(";")[0])
        raise UnreadableImageError(f"no readable image in a split of {len(self)} files")


class _TinyImageNetVal(_ImageFolder):
    """tiny-imagenet-200/val: images in ``images/``, labels in ``val_annotations.txt``, classes in ``../wnids.txt``."""

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        wnids = sorted((Path(directory).parent / "wnids.txt").read_text().split())
        return wnids, {w: i for i, w in enumerate(wnids)}

    def make_dataset(self, directory: str | Path, class_to_idx: dict[str, int], *args: Any, **kwargs: Any) -> list:
        folder = Path(directory)
        lines = (folder / "val_annotations.txt").read_text().splitlines()
        return [(str(folder / "images" / f), class_to_idx[w]) for f, w, *_ in (ln.split("\t") for ln in lines)]


class ImageNetDataModule(ClassificationDataModule):
    """ImageNet (ILSVRC-2012): val is the test split, a fixed subset of it validates; Inception-v3: 299 px / 342."""

    name = "imagenet"
    num_classes, in_chans, image_size = 1000, 3, 224
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    layout = "<root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG (1000 wnid folders each)"
    val_folder: type[_ImageFolder] = _ImageFolder

    def __init__(
        self,
        root: str = "data/imagenet",
        val_subset: int | None = 10000,
        split_seed: int = 0,
        image_size: int | None = None,
        resize: int = 256,
        skip_unreadable: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.root, self.val_subset, self.split_seed = Path(root), val_subset, split_seed
        self.image_size = image_size or self.image_size  # None: the dataset's (224 ImageNet, 64 Tiny-ImageNet)
        self.resize, self.skip_unreadable = resize, skip_unreadable

    def train_transform(self) -> v2.Transform:
        return v2.Compose([v2.RandomResizedCrop(self.image_size), v2.RandomHorizontalFlip(), TO_FLOAT])

    def eval_transform(self) -> v2.Transform:
        return v2.Compose([v2.Resize(self.resize), v2.CenterCrop(self.image_size), TO_FLOAT])

    def _folder(self, split: str, transform: v2.Transform, folder: type[_ImageFolder] = _ImageFolder) -> _ImageFolder:
        path = self.root / split
        try:
            return folder(str(path), transform, self.skip_unreadable)
        except (FileNotFoundError, RuntimeError) as err:
            raise self.not_found(path, str(err).splitlines()[0]) from err

    def setup(self, stage: str | None = None) -> None:
        fit = stage in (None, "fit")
        if self.test_set is not None and (self.train_set is not None or not fit):
            return
        val = self._folder("val", self.eval_transform(), self.val_folder)
        if fit:  # the splits are kept only once they agree: a failed check leaves nothing half set up
            train = self._folder("train", self.train_transform())
            if train.class_to_idx != val.class_to_idx:
                raise self.not_found(self.root / "train", "its class folders are not those of the val split")
            self.train_set = train
        self.test_set = self.val_set = val
        if self.val_subset is not None and self.val_subset < len(self.test_set):
            gen = torch.Generator().manual_seed(self.split_seed)
            self.val_set = Subset(self.test_set, torch.randperm(len(self.test_set), generator=gen)[: self.val_subset])


class TinyImageNetDataModule(ImageNetDataModule):
    """Tiny-ImageNet (200 classes, 64 px). The labelled val split is used for validation and testing."""

    name = "tiny_imagenet"
    num_classes, image_size = 200, 64
    layout = "<root>/{wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG, val/val_annotations.txt}"
    val_folder = _TinyImageNetVal

    def __init__(self, root: str = "data/tiny-imagenet-200", val_subset: int | None = None, **kwargs: Any) -> None:
        super().__init__(root=root, val_subset=val_subset, **kwargs)

    def train_transform(self) -> v2.Transform:
        return v2.Compose([v2.RandomCrop(64, padding=4), v2.RandomHorizontalFlip(), TO_FLOAT])

    def eval_transform(self) -> v2.Transform:
        return TO_FLOAT
