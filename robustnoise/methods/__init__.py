"""Training methods, one LightningModule per file; each file holds its method's whole algorithm."""

from robustnoise.methods.base import RobustClassifierModule
from robustnoise.methods.gnt import GaussianNoiseTraining
from robustnoise.methods.speckle import SpeckleNoiseTraining
from robustnoise.methods.vanilla import VanillaTraining

__all__ = ["GaussianNoiseTraining", "RobustClassifierModule", "SpeckleNoiseTraining", "VanillaTraining"]
