"""MNIST and CIFAR-10/100 through torchvision's dataset classes (standard on-disk layouts, optional download)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset
from torchvision import datasets
from torchvision.transforms import v2

from robustnoise.data.base import TO_FLOAT, ClassificationDataModule


class _TorchvisionDataModule(ClassificationDataModule):
    """Train split minus a fixed held-out validation part; the official test split for testing."""

    dataset_cls: type[Dataset]

    def __init__(
        self, root: str = "data", download: bool = False, val_size: int = 5000, split_seed: int = 0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.root, self.download, self.val_size, self.split_seed = Path(root), download, val_size, split_seed

    def eval_transform(self) -> v2.Transform:
        return TO_FLOAT

    train_transform = eval_transform

    def _dataset(self, train: bool, transform: v2.Transform) -> Dataset:
        try:
            return self.dataset_cls(str(self.root), train=train, transform=transform, download=self.download)
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted. You can use download=True ..."
            raise self.not_found(self.root, "set data.root, or data.download=true where there is a network") from err

    def prepare_data(self) -> None:
        if self.download:
            for train in (True, False):
                self._dataset(train, self.eval_transform())

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train_aug = self._dataset(True, self.train_transform())
        order = torch.randperm(len(train_aug), generator=torch.Generator().manual_seed(self.split_seed)).tolist()
        self.train_set = Subset(train_aug, order[self.val_size :])
        self.val_set = Subset(self._dataset(True, self.eval_transform()), order[: self.val_size])
        self.test_set = self._dataset(False, self.eval_transform())


class MNISTDataModule(_TorchvisionDataModule):
    """MNIST 28x28 grayscale; the model sees raw [0, 1] pixels (as Madry et al.'s CNN)."""

    name = "mnist"
    dataset_cls = datasets.MNIST
    num_classes, in_chans, image_size = 10, 1, 28
    mean, std = (0.0,), (1.0,)
    layout = "<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"


class CIFAR10DataModule(_TorchvisionDataModule):
    """CIFAR-10 with the standard random-crop (padding 4) + horizontal-flip augmentation."""

    name = "cifar10"
    dataset_cls = datasets.CIFAR10
    num_classes, in_chans, image_size = 10, 3, 32
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    layout = "<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}"

    def train_transform(self) -> v2.Transform:
        return v2.Compose([v2.ToImage(), v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(), TO_FLOAT])


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100, same recipe as CIFAR-10."""

    name = "cifar100"
    dataset_cls = datasets.CIFAR100
    num_classes = 100
    mean, std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    layout = "<root>/cifar-100-python/{train, test, meta}"
