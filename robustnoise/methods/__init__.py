"""Training methods, one LightningModule per file; each file holds its method's algorithm (the plumbing around it:
robustnoise.training)."""

from robustnoise.methods.ant import AdversarialNoiseTraining
from robustnoise.methods.base import RobustClassifierModule, VanillaTraining
from robustnoise.methods.gnt import NoiseTraining

__all__ = ["AdversarialNoiseTraining", "NoiseTraining", "RobustClassifierModule", "VanillaTraining"]
