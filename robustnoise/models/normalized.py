"""Wrapper that moves input normalisation inside the model, so every model consumes images in [0, 1]."""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from robustnoise.utils.errors import ConfigError


class NormalizedClassifier(nn.Module):
    """Applies ``(x - mean) / std`` (1 or ``net_in_chans`` values each) before ``net``.

    A 1-channel batch fed to a 3-channel network is repeated to RGB first (grayscale data on torchvision nets).
    """

    mean: Tensor
    std: Tensor

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float], net_in_chans: int) -> None:
        super().__init__()
        mean_t = torch.as_tensor(list(mean), dtype=torch.float32)
        std_t = torch.as_tensor(list(std), dtype=torch.float32)
        for label, t in (("mean", mean_t), ("std", std_t)):
            if t.ndim != 1 or len(t) not in (1, net_in_chans):
                raise ConfigError(f"{label} must have 1 or {net_in_chans} values (channels), got {list(t.tolist())}")
        if (std_t <= 0).any():
            raise ConfigError(f"std must be positive, got {std_t.tolist()}")
        self.net = net
        self.net_in_chans = net_in_chans
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1))
        self.register_buffer("std", std_t.view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Maps a batch ``(N, C, H, W)`` in [0, 1] to logits."""
        channels = x.shape[1]
        if channels == 1 and self.net_in_chans == 3:
            x = x.expand(-1, 3, -1, -1)
        elif channels != self.net_in_chans:
            raise ValueError(f"input has {channels} channels but the network expects {self.net_in_chans}")
        return self.net((x - self.mean) / self.std)

    def extra_repr(self) -> str:
        mean = [round(v, 4) for v in self.mean.flatten().tolist()]
        std = [round(v, 4) for v in self.std.flatten().tolist()]
        return f"mean={mean}, std={std}, net_in_chans={self.net_in_chans}"
