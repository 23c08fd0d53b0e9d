"""LightningDataModules for the clean datasets (images in [0, 1])."""

from robustnoise.data.base import ClassificationDataModule, IndexedDataset
from robustnoise.data.digits import DigitsDataModule, load_digit_images
from robustnoise.data.imagefolders import ImageNetDataModule, TinyImageNetDataModule
from robustnoise.data.torchvision_sets import CIFAR10DataModule, CIFAR100DataModule, MNISTDataModule

__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "ClassificationDataModule",
    "DigitsDataModule",
    "ImageNetDataModule",
    "IndexedDataset",
    "MNISTDataModule",
    "TinyImageNetDataModule",
    "load_digit_images",
]
