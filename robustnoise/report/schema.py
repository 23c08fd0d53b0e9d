"""The report of one evaluation, as ``robustness.json`` holds it."""

from __future__ import annotations

from typing import Any


def summarize(accuracies: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Clean accuracy, mean corruption accuracy, per-corruption means over severities (top-1 and top-5)."""
    corrupted = {k: v for k, v in accuracies.items() if k != "clean" and v["n"] > 0}
    per_corruption: dict[str, dict[str, float]] = {}
    for key, acc in corrupted.items():
        name = key.split("/")[0]
        per_corruption.setdefault(name, {"top1": 0.0, "top5": 0.0, "count": 0})
        per_corruption[name]["top1"] += acc["top1"]
        per_corruption[name]["top5"] += acc["top5"]
        per_corruption[name]["count"] += 1
    for value in per_corruption.values():
        count = value.pop("count")
        value["top1"] /= count
        value["top5"] /= count

    def mean(field: str) -> float:
        values = [v[field] for v in corrupted.values()]
        return sum(values) / len(values) if values else float("nan")

    clean = accuracies.get("clean", {"top1": float("nan"), "top5": float("nan")})
    return {
        "clean_top1": clean["top1"],
        "clean_top5": clean["top5"],
        "corrupted_top1": mean("top1"),
        "corrupted_top5": mean("top5"),
        "per_corruption": per_corruption,
    }
