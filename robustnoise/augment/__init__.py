"""Training-time image augmentations computed on the training device (DeepAugment-EDSR, AugMix)."""
