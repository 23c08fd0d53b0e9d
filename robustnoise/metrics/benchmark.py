"""The benchmarks an evaluation reports on: one name each for the config (``eval.benchmark``), the report and the
metrics, carrying the corruption preset, the released-file reader and the metric family."""

from __future__ import annotations

from enum import Enum

from robustnoise.corruptions.presets import (
    BENCHMARK_CORRUPTIONS,
    HOLDOUT_CORRUPTIONS,
    MNIST_C_CORRUPTIONS,
    MNISTC_PRESET,
    SEVERITIES,
)
from robustnoise.utils.errors import RobustnoiseError

_LEGACY = {"imagenet": "imagenetc", "tinyimagenet": "tinyimagenetc", "cifar": "cifar10c", "mnist": "mnistc"}
"""The metric-family names of reports written before this enum (the ``benchmark`` key of old ``robustness.json``)."""


class Benchmark(str, Enum):
    """``generated``: corruptions generated in memory with the data's severity table (``data.corruption_preset``),
    reported unnormalised since regenerated data is not a released benchmark. The others are the released -C sets
    (Hendrycks & Dietterich 2019; Mu & Gilmer 2019 for MNIST-C): their files are read by
    ``robustnoise.data.released_c`` under the member's value, and generated corruptions use their preset."""

    GENERATED = "generated"
    IMAGENET_C = "imagenetc"
    TINY_IMAGENET_C = "tinyimagenetc"
    CIFAR10_C = "cifar10c"
    CIFAR100_C = "cifar100c"
    MNIST_C = "mnistc"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def _missing_(cls, value: object) -> Benchmark | None:
        return cls(_LEGACY[value]) if value in _LEGACY else None

    @classmethod
    def parse(cls, value: str | Benchmark) -> Benchmark:
        """The member named ``value`` (also the names of older reports); a :class:`RobustnoiseError` otherwise."""
        try:
            return cls(value)
        except ValueError:
            raise RobustnoiseError(f"unknown benchmark {value!r}; valid: {', '.join(b.value for b in cls)}") from None

    @property
    def preset(self) -> str | None:
        """The severity table of generated corruptions (``None``: the data's)."""
        return _PRESETS.get(self)

    @property
    def reader(self) -> str | None:
        """The released -C reader (``kind`` of :func:`robustnoise.data.released_c.released_c_sets`)."""
        return None if self is Benchmark.GENERATED else self.value

    @property
    def normalized(self) -> bool:
        """AlexNet-normalised mCE (only meaningful for the released ImageNet-C), else unnormalised mean errors."""
        return self is Benchmark.IMAGENET_C

    @property
    def corruptions(self) -> tuple[str, ...]:
        """The corruptions whose mean is the benchmark's number."""
        return MNIST_C_CORRUPTIONS if self is Benchmark.MNIST_C else BENCHMARK_CORRUPTIONS

    @property
    def holdouts(self) -> tuple[str, ...]:
        """Reported apart, never averaged in (MNIST-C has none: its ``spatter`` is a benchmark corruption)."""
        return () if self is Benchmark.MNIST_C else HOLDOUT_CORRUPTIONS

    @property
    def severities(self) -> tuple[int, ...]:
        """MNIST-C's sets have one level, keyed ``s1``."""
        return (1,) if self is Benchmark.MNIST_C else SEVERITIES


_PRESETS = {
    Benchmark.IMAGENET_C: "imagenet",
    Benchmark.TINY_IMAGENET_C: "tinyimagenet",
    Benchmark.CIFAR10_C: "cifar",
    Benchmark.CIFAR100_C: "cifar",
    Benchmark.MNIST_C: MNISTC_PRESET,
}
