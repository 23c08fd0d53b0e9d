"""Noise generators for Adversarial Noise Training (Rusak et al. 2020, §3.2 and appendix A, tables 1–2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class NoiseGenerator(nn.Module):
    """Residual CNN mapping Gaussian noise to learned noise, blind to image and label (Rusak et al. 2020, App. A):
    ``depth`` unpadded convs ``channels → width → … → channels`` with ReLUs, plus the input noise; all 1x1 but the
    second (or only) with ``kernel=3`` (tables 1, 2: 983 / 4183 parameters). ``init_std``: N(0, init_std²) weights."""

    def __init__(
        self, channels: int = 3, kernel: int = 1, depth: int = 4, width: int = 20, init_std: float | None = 0.01
    ) -> None:
        super().__init__()
        if kernel not in (1, 3) or min(depth, width, channels) < 1:
            raise ValueError(f"kernel must be 1 or 3 and channels, depth, width >= 1, got {kernel}, {depth}, {width}")
        self.channels, self.kernel = channels, kernel
        sizes = [channels] + [width] * (depth - 1) + [channels]
        convs = [nn.Conv2d(sizes[i], sizes[i + 1], kernel if i == min(1, depth - 1) else 1) for i in range(depth)]
        self.net = nn.Sequential(*[layer for conv in convs for layer in (conv, nn.ReLU())][:-1])  # no ReLU at the end
        for conv in self.net[::2] if init_std is not None else []:
            nn.init.normal_(conv.weight, 0.0, init_std)
            nn.init.zeros_(conv.bias)

    def sample_latent(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """z ~ N(0, 1) for images shaped like ``x`` (N, C, H, W), ``kernel - 1`` pixels larger (the output is H×W)."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected input of shape (N, {self.channels}, H, W), got {tuple(x.shape)}")
        n, c, h, w = x.shape
        pad = self.kernel - 1
        return torch.randn(n, c, h + pad, w + pad, dtype=x.dtype, device=x.device, generator=generator)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Noise shaped like ``x`` (whose values are ignored): conv_stack(z) + centre crop of z (App. A)."""
        # Channels-last (N, H, W, C), where a 1x1 convolution is a matrix product over the channels (F.linear): on CPU
        # the generator step is ~20 % faster on 1-channel images than with oneDNN's thin (20-channel) convolutions.
        z = self.sample_latent(x, generator).permute(0, 2, 3, 1)
        border = (self.kernel - 1) // 2
        h, w = x.shape[-2:]
        out = z.contiguous()
        for layer in self.net:
            if isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1):
                out = F.linear(out, layer.weight.flatten(1), layer.bias)
            elif isinstance(layer, nn.Conv2d):
                out = layer(out.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous()
            else:
                out = layer(out)
        return (out + z[:, border : border + h, border : border + w]).permute(0, 3, 1, 2).contiguous()
