"""Training-time image augmentations computed on the training device (DeepAugment-EDSR, AugMix)."""

from robustnoise.augment.deepaugment import WEIGHT_OPS, DeepAugmentEDSR

__all__ = ["WEIGHT_OPS", "DeepAugmentEDSR"]
