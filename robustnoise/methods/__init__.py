"""Training methods, one LightningModule per file holding its algorithm (the plumbing: robustnoise.training)."""

from robustnoise.methods.ant import AdversarialNoiseTraining
from robustnoise.methods.base import RobustClassifierModule, VanillaTraining
from robustnoise.methods.gnt import NoiseTraining

__all__ = ["AdversarialNoiseTraining", "NoiseTraining", "RobustClassifierModule", "VanillaTraining"]
