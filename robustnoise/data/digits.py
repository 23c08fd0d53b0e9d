"""scikit-learn's bundled handwritten digits: real data that ships inside the wheel, the offline default."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import TensorDataset

from robustnoise.data.base import ClassificationDataModule


def load_digit_images(image_size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits as float images (N, 1, S, S) in [0, 1] (bilinear upsampling of the 8x8 scans) and labels."""
    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return images.clamp_(0.0, 1.0), torch.as_tensor(digits.target, dtype=torch.long)


class DigitsDataModule(ClassificationDataModule):
    """Handwritten digits, upsampled to ``image_size``; fixed stratified train/val/test split."""

    name = "digits"
    num_classes, in_chans = 10, 1
    mean, std = (0.0,), (1.0,)
    layout = "bundled with scikit-learn (sklearn.datasets.load_digits)"

    def __init__(
        self,
        image_size: int = 28,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.image_size, self.val_fraction, self.test_fraction = image_size, val_fraction, test_fraction
        self.split_seed = split_seed

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        images, labels = load_digit_images(self.image_size)
        rest, test = train_test_split(
            range(len(labels)), test_size=self.test_fraction, stratify=labels, random_state=self.split_seed
        )
        val_share = self.val_fraction / (1.0 - self.test_fraction)
        train, val = train_test_split(rest, test_size=val_share, stratify=labels[rest], random_state=self.split_seed)
        self.train_set, self.val_set, self.test_set = (TensorDataset(images[i], labels[i]) for i in (train, val, test))
