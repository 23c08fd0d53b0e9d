"""AugMix on device batches and its Jensen-Shannon consistency loss (Hendrycks et al. 2020; AdA App. A).

The augmentation itself is torchvision's ``v2.AugMix`` with ``all_ops=False`` (the reference's op set without the
ImageNet-C-overlapping colour/contrast/brightness/sharpness ops). torchvision samples one op chain per call, so a
batch is augmented image by image; it mixes in uint8 space, so images are quantised to 8 bits on the way (as the
reference's PIL pipeline). Known differences to the reference (documented in docs/ada.md): magnitudes come from a
10-bin grid with maximum (severity - 1)/9 of the op's range instead of severity/10.

torchvision has no JSD loss; :func:`jsd_consistency` is the reference's: the mean of the three KL divergences to the
mixture distribution, the mixture clamped to [1e-7, 1] before the log, times lambda = 12.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms import v2


class BatchAugMix(nn.Module):
    """AugMix each image of a float batch in [0, 1] independently; returns a float batch in [0, 1].

    Args:
        severity, mixture_width, chain_depth, alpha: torchvision's AugMix arguments (reference: 3, 3, -1, 1).
        all_ops: include the ops that overlap with ImageNet-C (the reference's ``--all-ops``; default off).
    """

    def __init__(
        self,
        severity: int = 3,
        mixture_width: int = 3,
        chain_depth: int = -1,
        alpha: float = 1.0,
        all_ops: bool = False,
    ) -> None:
        super().__init__()
        self.augmix = v2.AugMix(
            severity=severity, mixture_width=mixture_width, chain_depth=chain_depth, alpha=alpha, all_ops=all_ops
        )

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        images = x.detach().mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
        mixed = torch.stack([self.augmix(image) for image in images])  # one op chain per image (see module doc)
        return mixed.to(x.dtype).div_(255.0)


def jsd_consistency(logits: Tensor, num_views: int = 3) -> Tensor:
    """Jensen-Shannon consistency over ``num_views`` stacked views ``(V * B, K)`` (without the lambda factor).

    ``JS = mean_v KL(p_v || M)``, ``M = mean_v p_v`` clamped to [1e-7, 1]; ``kl_div`` with ``batchmean`` as the
    reference. Zero when every view predicts the same distribution.
    """
    probs = F.softmax(logits.float(), dim=1).chunk(num_views)
    log_mixture = torch.stack(probs).mean(0).clamp(1e-7, 1.0).log()
    return sum(F.kl_div(log_mixture, p, reduction="batchmean") for p in probs) / num_views
