"""Noise for corruption robustness: ANT noise generators and clipping-aware projection onto the l2 sphere."""

from robustnoise.noise.generators import NoiseGenerator
from robustnoise.noise.projection import clipping_aware_scale, l2_norm, project_to_sphere

__all__ = ["NoiseGenerator", "clipping_aware_scale", "l2_norm", "project_to_sphere"]
