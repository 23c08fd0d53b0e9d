"""Training methods, one LightningModule per file; each file holds its method's whole algorithm."""

import robustnoise.utils.strategies  # noqa: F401  (registers the ddp_per_network strategies)
from robustnoise.methods.ant import AdversarialNoiseTraining
from robustnoise.methods.base import RobustClassifierModule
from robustnoise.methods.gnt import GaussianNoiseTraining
from robustnoise.methods.speckle import SpeckleNoiseTraining
from robustnoise.methods.vanilla import VanillaTraining

__all__ = [
    "AdversarialNoiseTraining",
    "GaussianNoiseTraining",
    "RobustClassifierModule",
    "SpeckleNoiseTraining",
    "VanillaTraining",
]
