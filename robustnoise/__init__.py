"""robustnoise: training and evaluating image classifiers that stay accurate under common corruptions."""

__version__ = "0.1.0"
