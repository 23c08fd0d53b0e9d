"""``robustness.json``, the report of one evaluation: :meth:`Report.to_dict` (the fields, :func:`summarize` of
``sets`` and ``sets``) and :meth:`Report.from_dict` (also files written before :class:`Benchmark`)."""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from robustnoise.metrics import Benchmark, accuracy_matrix, robustness_summary

REPORT_JSON = "robustness.json"
NAN = float("nan")
EPS_DIRECTIONS = ("gaussian", "uniform", "adversarial")  # display order of eps*; others follow alphabetically
_PER_GENERATOR = re.compile(r"adversarial_\d+")


@dataclass
class Report:
    """One evaluation. ``sets``: ``{"clean" | "<corruption>/s<k>": {"top1": %, "top5": %, "n": images}}``;
    ``metrics``: :func:`robustnoise.metrics.robustness_summary` of the sets; ``gaussian_sigmas``: top-1 per sigma;
    ``adversarial_noise`` and ``eps_star``: Rusak et al. 2020, Table 2; ``attacks``: ``accuracy`` and ``epsilon``
    per attack."""

    sets: dict[str, dict[str, float]] = field(default_factory=dict)
    method: str | None = None
    run_name: str | None = None
    model: str | None = None
    data: str | None = None
    seed: int | None = None
    benchmark: Benchmark = Benchmark.GENERATED
    preset: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    gaussian_sigmas: dict[float, float] = field(default_factory=dict)
    adversarial_noise: dict[str, Any] | None = None
    eps_star: dict[str, dict[str, Any]] = field(default_factory=dict)
    attacks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.benchmark = Benchmark.parse(self.benchmark)
        if not self.metrics and self.sets:
            with warnings.catch_warnings():  # partial sets are normal for generated evaluations
                warnings.simplefilter("ignore")
                self.metrics = robustness_summary(self.sets, self.benchmark)
        self.gaussian_sigmas = dict(sorted((float(s), float(a)) for s, a in self.gaussian_sigmas.items()))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Report:
        """A report from the content of ``robustness.json`` (unknown keys, e.g. the derived summary, are ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known and v is not None}
        data = str(raw.get("data", "")).lower()  # reports written before the benchmark key: guessed from the data
        guesses = {"imagenet-c": Benchmark.IMAGENET_C, "tiny-imagenet-c": Benchmark.TINY_IMAGENET_C}
        guess = Benchmark.MNIST_C if "mnist" in data and data.endswith("-c") else guesses.get(data, Benchmark.GENERATED)
        values["benchmark"] = Benchmark.parse(raw.get("benchmark") or guess)
        values["metrics"] = {k: num(v) for k, v in (raw.get("metrics") or {}).items()}
        if not values["metrics"] and not raw.get("sets"):  # a report of clean accuracy only
            values["metrics"] = {k: num(raw.get(k)) for k in ("clean_top1", "clean_top5")}
        eps = raw.get("eps_star") or {}
        values["eps_star"] = {d: v if isinstance(v, dict) else {"median": v} for d, v in eps.items()}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The content of ``robustness.json``; kinds of numbers the evaluation did not compute are left out."""
        out = {k: v for k, v in asdict(self).items() if v not in (None, {}) or k in ("seed", "preset")}
        sets = out.pop("sets", {})
        out["benchmark"] = self.benchmark.value
        if self.gaussian_sigmas:
            out["gaussian_sigmas"] = {f"{s:g}": a for s, a in self.gaussian_sigmas.items()}
        return {**out, **summarize(sets), "sets": sets}

    @classmethod
    def load(cls, run_dir: str | Path) -> Report:
        """The report in ``run_dir``; :class:`FileNotFoundError` if the run was not evaluated."""
        path = Path(run_dir) / REPORT_JSON
        if not path.is_file():
            raise FileNotFoundError(f"no {REPORT_JSON} in {run_dir}: was the run evaluated (task=train or task=eval)?")
        return cls.from_dict(json.loads(path.read_text()))

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, allow_nan=True))

    @property
    def label(self) -> str:
        """The name the report is shown under: its run name, else its method."""
        return str(self.run_name or self.method or "run")

    def metric(self, key: str) -> float:
        """One number of ``metrics`` (NaN if absent; ``c_top1/5`` without the benchmark set: over all evaluated)."""
        value = num(self.metrics.get(key))
        if math.isnan(value) and key in ("c_top1", "c_top5"):
            value = num(summarize(self.sets)[key.replace("c_", "corrupted_")])
        return value

    def matrix(self, field: str = "top1") -> dict[str, dict[int, float]]:
        """``{corruption: {severity: accuracy %}}``, corruptions in evaluation order."""
        return accuracy_matrix(self.sets, field)

    def corruptions(self) -> tuple[list[str], list[str]]:
        """``(benchmark corruptions, holdouts)`` evaluated, in evaluation order (MNIST-C: no holdouts)."""
        held, mnist_c = self.benchmark.holdouts, self.benchmark is Benchmark.MNIST_C
        names = [n for n in self.matrix() if not (mnist_c and n == "identity")]  # MNIST-C's identity: the clean set
        return [n for n in names if n not in held], [n for n in names if n in held]

    def corruption_accuracy(self, corruption: str, field: str = "top1") -> float:
        """Accuracy (%) under one corruption, averaged over its severities; NaN if not evaluated."""
        return mean(self.matrix(field).get(corruption, {}).values())

    def eps_value(self, direction: str) -> tuple[float, float]:
        """``(centre, spread)`` of eps* in one direction: the median (else the mean) and the std."""
        stats = self.eps_star.get(direction, {})
        median = num(stats.get("median"))
        return (median, NAN) if not math.isnan(median) else (num(stats.get("mean")), num(stats.get("std")))

    def eps_worst(self) -> float:
        """The smallest median eps* over the adversarial generators (the attacker's view); NaN if none."""
        return min((num(v.get("median")) for k, v in self.eps_star.items() if _PER_GENERATOR.fullmatch(k)), default=NAN)

    def adversarial(self) -> tuple[float, float, float]:
        """``(mean, std, epsilon)`` of the accuracy under adversarial noise; NaNs if not evaluated."""
        adv = self.adversarial_noise or {}
        return num(adv.get("mean")), num(adv.get("std")), num(adv.get("epsilon"))

    def adversarial_worst(self) -> float:
        """Accuracy under the strongest adversarial noise generator; NaN if not evaluated."""
        adv = self.adversarial_noise or {}
        return num(adv.get("worst", min(adv.get("per_seed") or [NAN])))

    def attack(self, name: str) -> tuple[float, float]:
        """``(accuracy %, epsilon)`` under one attack; NaNs if not evaluated."""
        result = self.attacks.get(name) or {}
        return num(result.get("accuracy")), num(result.get("epsilon"))


def eps_directions(reports: Sequence[Report], per_seed: bool = False) -> list[str]:
    """The eps* directions of ``reports`` in display order (``adversarial_<k>``: ``per_seed`` or without summary)."""
    present = {d for r in reports for d in r.eps_star}
    if not per_seed and "adversarial" in present:
        present = {d for d in present if not _PER_GENERATOR.fullmatch(d)}
    natural = lambda d: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", d)]  # noqa: E731
    return [d for d in EPS_DIRECTIONS if d in present] + sorted(present - set(EPS_DIRECTIONS), key=natural)


def all_corruptions(reports: Sequence[Report]) -> tuple[list[str], list[str]]:
    """:meth:`Report.corruptions` over ``reports``: each name once, in first-seen order."""
    pairs = [r.corruptions() for r in reports]
    return [*dict.fromkeys(c for m, _ in pairs for c in m)], [*dict.fromkeys(c for _, h in pairs for c in h)]


def attack_names(reports: Sequence[Report]) -> list[str]:
    """The attacks evaluated in any of ``reports``, in first-seen order."""
    return list(dict.fromkeys(n for r in reports for n in r.attacks))


def num(value: Any) -> float:
    """``value`` as a float; NaN for None, non-numbers and booleans."""
    try:
        return NAN if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return NAN


def mean(values: Iterable[Any]) -> float:
    """Mean of the finite numbers of ``values``; NaN if there is none."""
    finite = [v for v in map(num, values) if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else NAN


def summarize(accuracies: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Clean accuracy, mean corruption accuracy, per-corruption means over severities (top-1 and top-5)."""
    corrupted = {k: v for k, v in accuracies.items() if k != "clean" and v["n"] > 0}
    clean = accuracies.get("clean", {"top1": NAN, "top5": NAN})
    matrices = {f: accuracy_matrix(corrupted, f) for f in ("top1", "top5")}
    return {
        "clean_top1": clean["top1"],
        "clean_top5": clean["top5"],
        **{f"corrupted_{f}": mean(v[f] for v in corrupted.values()) for f in ("top1", "top5")},
        "per_corruption": {c: {f: mean(matrices[f][c].values()) for f in matrices} for c in matrices["top1"]},
    }
