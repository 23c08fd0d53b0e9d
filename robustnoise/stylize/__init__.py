"""Stylized data: AdaIN stylization (Stylized-ImageNet, ANT+SIN) and ``task=stylize``."""

from robustnoise.stylize.adain import AdaINStylizer, adain, build_decoder, build_encoder, feature_mean_std

__all__ = ["AdaINStylizer", "adain", "build_decoder", "build_encoder", "feature_mean_std"]
