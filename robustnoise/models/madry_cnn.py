"""Madry et al.'s (2018) MNIST CNN."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class MadryCNN(nn.Module):
    """Two 5x5 conv + max-pool stages (32, 64 channels), a 1024-unit hidden layer sized for ``image_size`` inputs."""

    def __init__(self, num_classes: int, in_chans: int = 1, image_size: int = 28) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 32, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=5, padding=2)
        self.fc1 = nn.Linear(64 * (image_size // 4) ** 2, 1024)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))
