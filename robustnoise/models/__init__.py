"""Classifiers taking images in [0, 1], with input normalisation inside the model."""

from robustnoise.models.registry import NormalizedClassifier, create_model, list_models
from robustnoise.models.weights import load_classifier_weights

__all__ = ["NormalizedClassifier", "create_model", "list_models", "load_classifier_weights"]
