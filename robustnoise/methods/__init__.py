"""Training methods, one LightningModule per file; each file holds its method's algorithm (the plumbing around it:
robustnoise.training)."""

from robustnoise.methods.ant import AdversarialNoiseTraining
from robustnoise.methods.base import RobustClassifierModule
from robustnoise.methods.gnt import NoiseTraining
from robustnoise.methods.vanilla import VanillaTraining

__all__ = ["AdversarialNoiseTraining", "NoiseTraining", "RobustClassifierModule", "VanillaTraining"]
