"""robustnoise: training and evaluating image classifiers that stay accurate under common corruptions."""

from typing import Any

__version__ = "0.1.0"

_API = ("Report", "build_method", "evaluate_robustness", "load_data")
__all__ = list(_API)


def __getattr__(name: str) -> Any:
    """The notebook API (``robustnoise.api``), imported on first use: ``import robustnoise`` stays light."""
    if name in _API:
        from robustnoise import api

        return getattr(api, name)
    raise AttributeError(f"module 'robustnoise' has no attribute {name!r}")
