"""Vanilla training: the classifier sees clean images only (the baseline row of every table)."""

from __future__ import annotations

from robustnoise.methods.base import RobustClassifierModule


class VanillaTraining(RobustClassifierModule):
    """Standard cross-entropy training on the clean batch."""
