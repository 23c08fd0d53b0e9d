"""robustnoise: training and evaluating image classifiers that stay accurate under common corruptions."""

from typing import Any

__all__ = ["Report", "build_method", "evaluate_robustness", "load_data"]


def __getattr__(name: str) -> Any:
    """The notebook API (``robustnoise.api``), imported on first use: ``import robustnoise`` stays light."""
    if name in __all__:
        from robustnoise import api

        return getattr(api, name)
    raise AttributeError(f"module 'robustnoise' has no attribute {name!r}")
