"""Robustness evaluation in Lightning's test loop. *Generated* sets: corruptions applied on the device to each clean
test batch, seeded per image (independent of batch size, workers and rank), on the 8-bit grid (docs/exactness.md);
*released* sets: a loader per (corruption, severity). Per-image records merge across ranks by max (exact under DDP)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from robustnoise.corruptions import corrupt, rng, sample_seeds
from robustnoise.corruptions.presets import check_severity
from robustnoise.corruptions.transforms import corruption_seed_key
from robustnoise.data.base import IndexedDataset
from robustnoise.eval.eps_star import lower_median, minimal_perturbation, random_directions
from robustnoise.metrics import Benchmark, accuracy_matrix, mean, robustness_summary
from robustnoise.noise.projection import project_to_sphere
from robustnoise.utils.errors import ConfigError
from robustnoise.utils.progress import progress


@dataclass(frozen=True)
class EvalSet:
    """The clean test split (``corruption=None``) or one corruption at one severity; ``dataset``: released files."""

    corruption: str | None
    severity: int = 0
    dataset: Dataset | None = None

    @property
    def key(self) -> str:
        return "clean" if self.corruption is None else f"{self.corruption}/s{self.severity}"


def check_suite_args(corruptions: Any, severities: Any, gaussian_sigmas: Any) -> None:
    """One-line errors for unknown corruptions, severities outside 1..5 and negative sigmas, before any work."""
    for severity in severities:
        check_severity(severity)
    for name in corruptions:
        corruption_seed_key(name)
    if any(float(s) < 0 for s in gaussian_sigmas or []):
        raise ConfigError(f"eval.gaussian_sigmas must be >= 0, got {[float(s) for s in gaussian_sigmas]}")


class CorruptionSuite:
    """Clean plus in-memory corrupted versions of one test dataset; per-image top-1 / top-5 records."""

    def __init__(
        self,
        dataset: Dataset,
        corruptions: list[str],
        severities: list[int],
        preset: str = "imagenet",
        seed: int = 0,
        batch_size: int = 256,
        num_workers: int = 0,
        released: list[tuple[str, int, Dataset]] | None = None,
        eps_star: dict[str, Any] | None = None,
        noise_generators: list[torch.nn.Module] | None = None,
        noise_epsilon: float | None = None,
        gaussian_sigmas: list[float] | None = None,
        benchmark: Benchmark | str = Benchmark.GENERATED,
    ) -> None:
        check_suite_args(corruptions, severities, gaussian_sigmas)
        self.dataset = dataset
        self.benchmark = Benchmark.parse(benchmark)  # the mean-C definition (robustnoise.metrics.robustness_summary)
        self.preset = preset
        self.seed = seed
        self.batch_size = batch_size
        self.num_workers = num_workers
        generated = [EvalSet(None)] + [EvalSet(c, int(s)) for c in corruptions for s in severities]
        self.sets = generated + [EvalSet(c, int(s), IndexedDataset(files)) for c, s, files in released or []]
        # the generated sets come from the clean loader's batches; loader 1 + i evaluates set released[i]
        self.generated, self.released = range(len(generated)), range(len(generated), len(self.sets))
        # adversarial noise (Rusak et al. 2020, Table 2): accuracy at noise_epsilon and eps* along each generator
        self.noise_generators = list(noise_generators or [])
        self.noise_epsilon = noise_epsilon
        eps_star = eps_star or {}
        self.rel_tol = float(eps_star.get("rel_tol", 1e-5))
        adversarial = [f"adversarial_{k}" for k in range(len(self.noise_generators))]
        self.eps_directions = [*eps_star.get("directions", []), *adversarial] if eps_star.get("enabled") else []
        # accuracy under clip(x + sigma n) per sigma: the x-axis of Rusak et al. 2020, Fig. 2
        self.sigmas = [float(s) for s in gaussian_sigmas or []]

    def dataloaders(self) -> list[DataLoader]:
        """The clean test images (all generated sets come from its batches), then one loader per released set."""
        datasets = [self.dataset] + [self.sets[k].dataset for k in self.released]
        return [DataLoader(d, batch_size=self.batch_size, num_workers=self.num_workers) for d in datasets]

    def corrupted(self, eval_set: EvalSet, x: Tensor, index: Tensor) -> Tensor:
        if eval_set.corruption is None:
            return x
        seeds = sample_seeds(self.seed, index, corruption_seed_key(eval_set.corruption), eval_set.severity)
        return corrupt(x, eval_set.corruption, eval_set.severity, preset=self.preset, seed=seeds)

    @torch.no_grad()
    def evaluate_batch(self, model: torch.nn.Module, x: Tensor, y: Tensor, index: Tensor, loader: int = 0) -> None:
        """Record top-1/top-5 correctness of ``model``: batches of loader 0 on every generated set, else one set."""
        if loader == 0:
            for k in progress(self.generated, "eval: corrupted sets of a test batch"):
                images = self.corrupted(self.sets[k], x, index)
                self.record(k, index, model(images if images is x else to_uint8_grid(images)), y)
            for j, sigma in enumerate(self.sigmas):
                noisy = gaussian_noise_images(x, sigma, sample_seeds(self.seed, index, SIGMA_SALT, round(sigma * 1000)))
                self.sigma_top1[j][index] = (model(noisy).argmax(dim=1) == y).to(torch.int8)
            for k, generator in enumerate(self.noise_generators):
                noisy = project_to_sphere(x, generator(x), float(self.noise_epsilon))
                self.noise_top1[k][index] = (model(noisy).argmax(dim=1) == y).to(torch.int8)
            clean = model(x) if self.eps_directions else None  # one clean pass for every direction
            for salt, name in progress(list(enumerate(self.eps_directions)), "eval: eps* search"):
                if name.startswith("adversarial_"):
                    direction = self.noise_generators[int(name.rsplit("_", 1)[1])](x)
                else:
                    direction = random_directions(x, name, sample_seeds(self.seed, index, 1000 + salt))
                self.eps[name][index], passes = minimal_perturbation(model, x, y, direction, self.rel_tol, clean)
                self.eps_passes[name] = self.eps_passes.get(name, 0.0) + (passes + 1) * len(x)  # + the clean pass
        else:
            self.record(self.released[loader - 1], index, model(x), y)

    def reset(self, device: torch.device) -> None:
        sizes = [len(s.dataset if s.dataset is not None else self.dataset) for s in self.sets]  # type: ignore[arg-type]
        self.top1 = [torch.full((n,), -1, dtype=torch.int8, device=device) for n in sizes]
        self.top5 = [torch.full((n,), -1, dtype=torch.int8, device=device) for n in sizes]
        self.noise_top1 = [torch.full((sizes[0],), -1, dtype=torch.int8, device=device) for _ in self.noise_generators]
        self.sigma_top1 = [torch.full((sizes[0],), -1, dtype=torch.int8, device=device) for _ in self.sigmas]
        self.eps = {name: torch.full((sizes[0],), -1.0, device=device) for name in self.eps_directions}
        self.eps_passes: dict[str, float] = {}

    def record(self, k: int, index: Tensor, logits: Tensor, y: Tensor) -> None:
        topk = logits.topk(min(5, logits.shape[1]), dim=1).indices
        self.top1[k][index] = (topk[:, 0] == y).to(torch.int8)
        self.top5[k][index] = (topk == y[:, None]).any(dim=1).to(torch.int8)

    def gather(self) -> None:
        """Merge the records of all ranks (no-op without torch.distributed): unseen -1 < any record; inf stays inf."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for values in [*self.top1, *self.top5, *self.noise_top1, *self.sigma_top1, *self.eps.values()]:
                dist.all_reduce(values, op=dist.ReduceOp.MAX)

    def accuracies(self) -> dict[str, dict[str, float]]:
        """Per set: top-1 and top-5 accuracy in % over the images evaluated (the same for both), and their count."""
        return {
            s.key: {"top1": _percent(top1), "top5": _percent(top5), "n": int((top1 >= 0).sum())}
            for s, top1, top5 in zip(self.sets, self.top1, self.top5)
        }

    def adversarial_results(self) -> dict[str, Any]:
        """Top-1 per sigma and per noise generator, eps* per direction (Rusak et al. 2020, Table 2)."""
        out: dict[str, Any] = {}
        if self.sigmas:
            out["gaussian_sigmas"] = {f"{s:g}": _percent(r) for s, r in zip(self.sigmas, self.sigma_top1)}
        if self.noise_generators:
            accs = [_percent(r) for r in self.noise_top1]
            stats = {"per_seed": accs, **_mean_std(accs), "worst": min(accs)}  # worst: the attacker's view
            out["adversarial_noise"] = {"epsilon": self.noise_epsilon, **stats}
        if self.eps:
            eps_star: dict[str, Any] = {}
            n_images = max(1, int((next(iter(self.eps.values())) >= 0).sum()))
            for name, values in self.eps.items():
                seen = values[values >= 0]
                eps_star[name] = {
                    "median": lower_median(seen.cpu()),
                    "n": int(seen.numel()),
                    "never_flipped": int(torch.isinf(seen).sum()),
                    "already_wrong": int((seen == 0).sum()),
                    "passes_per_image": self.eps_passes.get(name, 0.0) / n_images,
                }
            adversarial = [v["median"] for k, v in eps_star.items() if k.startswith("adversarial_")]
            if adversarial:
                eps_star["adversarial"] = {"per_seed": adversarial, **_mean_std(adversarial)}
            out["eps_star"] = eps_star
        return out

    def metrics(self) -> dict[str, float]:
        """Flat metric names for the loggers: ``test/acc``, ``test_c/<corruption>/s<k>/acc``, ``test_c/mean_acc``."""
        return flat_metrics(self.accuracies(), self.benchmark)


def to_uint8_grid(images: Tensor) -> Tensor:
    """``round(255 x) / 255``, bit-identical to decoding the uint8 values. Rounding, not the released files' truncation:
    flat regions near a grid level would otherwise move a whole level between batch shapes."""
    return images.mul(255.0).round_().div_(255.0)


SIGMA_SALT = 2000  # seed salt of the sigma sweep's noise (sigma in thousandths), apart from corruptions and eps*


def gaussian_noise_images(x: Tensor, sigma: float, seeds: Tensor) -> Tensor:
    """``clip(x + sigma n, 0, 1)`` with ``n ~ N(0, I)`` drawn per image from its seed (Rusak et al. 2020, §3.1)."""
    return (x + sigma * rng.normal(seeds, tuple(x.shape[1:]), device=x.device, dtype=x.dtype)).clamp_(0, 1)


def _percent(records: Tensor) -> float:
    return 100.0 * float(records[records >= 0].double().mean())  # NaN if none was evaluated


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def flat_metrics(
    accuracies: dict[str, dict[str, float]], benchmark: Benchmark | str = Benchmark.GENERATED
) -> dict[str, float]:
    """Logger metrics; ``test_c/mean_acc`` is the report's mean-C (``c_top1`` of ``robustness_summary``)."""
    metrics = {"test/acc": accuracies["clean"]["top1"], "test/acc_top5": accuracies["clean"]["top5"]}
    for key, acc in accuracies.items():
        if key != "clean":
            metrics |= {f"test_c/{key}/acc": acc["top1"], f"test_c/{key}/acc_top5": acc["top5"]}
    per_corruption = accuracy_matrix(accuracies)
    metrics |= {f"test_c/{name}/acc": mean(row.values()) for name, row in per_corruption.items()}
    if per_corruption:
        means = robustness_summary(accuracies, benchmark, warn=False)
        metrics |= {"test_c/mean_acc": means["c_top1"], "test_c/mean_acc_top5": means["c_top5"]}
    return metrics
