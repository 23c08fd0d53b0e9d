"""AugMix on device batches and its JSD loss (Hendrycks et al. 2020; AdA App. A): torchvision's ``v2.AugMix`` without
ops overlapping ImageNet-C, one op chain per uint8 image as the reference (magnitudes differ: docs/ada.md)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import v2


class BatchAugMix(v2.AugMix):
    """AugMix each image of a float batch in [0, 1] (torchvision's defaults are the reference's)."""

    def __init__(self, all_ops: bool = False, **kwargs: Any) -> None:
        super().__init__(all_ops=all_ops, **kwargs)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        images = x.detach().mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
        mixed = torch.stack([v2.AugMix.forward(self, image) for image in images])
        return mixed.to(x.dtype).div_(255.0)


def jsd_consistency(logits: Tensor, num_views: int = 3) -> Tensor:
    """The reference's JSD ``mean_v KL(p_v || M)`` over ``num_views`` stacked views (without lambda = 12)."""
    probs = F.softmax(logits.float(), dim=1).chunk(num_views)
    log_mixture = torch.stack(probs).mean(0).clamp(1e-7, 1.0).log()
    return sum(F.kl_div(log_mixture, p, reduction="batchmean") for p in probs) / num_views
