"""Stylized data: AdaIN stylization (Stylized-ImageNet, ANT+SIN) and ``task=stylize``."""
