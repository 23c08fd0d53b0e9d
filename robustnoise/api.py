"""The Python API for notebooks: evaluate any ``nn.Module`` or build a method's LightningModule without ``run.py``.

``evaluate_robustness`` runs the CLI's evaluation (``task=eval``: the same config composition, corruption suite,
attacks and report) on a model in memory; ``build_method`` builds a method from its ``conf/method`` YAML. Models take
images in [0, 1] and normalise inside (wrap a torchvision model in
:class:`robustnoise.models.normalized.NormalizedClassifier` with the data's mean and std).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from robustnoise.corruptions.presets import ALL_CORRUPTIONS, BENCHMARK_CORRUPTIONS, CORRUPTION_GROUPS
from robustnoise.data import ClassificationDataModule
from robustnoise.eval.evaluate import adversarial_generators, corruption_suite, evaluation_report
from robustnoise.methods.base import RobustClassifierModule
from robustnoise.methods.configs import compose_config, method_from_yaml
from robustnoise.report import schema
from robustnoise.report.reporting import format_markdown, format_table, write_report
from robustnoise.utils import resolvers  # noqa: F401  (registers the rn.* resolvers the configs use)
from robustnoise.utils.errors import ConfigError
from robustnoise.utils.instantiate import instantiate

CORRUPTION_SETS: dict[str, tuple[str, ...]] = {
    "imagenet-c": BENCHMARK_CORRUPTIONS,  # the 15 of mCE (ImageNet-C, CIFAR-10-C, Tiny-ImageNet-C)
    "all": ALL_CORRUPTIONS,  # plus the 4 holdout corruptions
    **CORRUPTION_GROUPS,  # noise, blur, weather, digital, extra
}
"""Names for ``corruptions=``; ``mnist-c`` is the eval group ``mnist_c_generated`` (its own preset and severity)."""

RELEASED_KIND = {"cifar10": "cifar10c", "cifar100": "cifar100c", "mnist": "mnistc", "digits": "mnistc"}
RELEASED_KIND |= {"imagenet": "imagenetc", "tiny_imagenet": "tinyimagenetc"}


def load_data(name: str = "digits", **overrides: Any) -> ClassificationDataModule:
    """The DataModule of ``conf/data/<name>.yaml`` (``overrides``: its keys, e.g. ``root=``), set up for testing."""
    cfg = compose_config([f"data={name}"])
    datamodule = instantiate(OmegaConf.merge(cfg.data, overrides))
    datamodule.setup("test")
    return datamodule


def build_method(
    name: str,
    data: str | ClassificationDataModule = "digits",
    model: str | dict[str, Any] = "madry_cnn",
    **overrides: Any,
) -> RobustClassifierModule:
    """The LightningModule of ``conf/method/<name>.yaml`` with ``overrides`` (e.g. ``sigma=0.3``) for ``data``'s
    images; ``model``: a ``conf/model`` name or its settings. Train it with ``pl.Trainer(...).fit(method, data)``."""
    datamodule = load_data(data) if isinstance(data, str) else data
    if isinstance(model, str):
        model = OmegaConf.to_container(compose_config([f"model={model}"]).model, resolve=True)  # type: ignore[assignment]
    return method_from_yaml(name, data=datamodule.info(), model=dict(model), **overrides)


class Report(schema.Report):
    """One evaluation, as the CLI writes it to ``robustness.json`` (:class:`robustnoise.report.schema.Report`), with
    its tables and files."""

    def table(self) -> str:
        """The markdown tables of ``robustness.md``: summary, per corruption, corruption x severity."""
        return format_markdown(self)

    def summary(self) -> str:
        """The one-row table the CLI prints at the end of a run."""
        return format_table([self], [self.label])

    def save(self, out_dir: str | Path) -> Path:
        """Write ``robustness.{json,csv,md}`` and the figures to ``out_dir`` (as the CLI does); returns it."""
        write_report(self, out_dir)
        return Path(out_dir)

    def __repr__(self) -> str:
        return self.summary()


def evaluate_robustness(
    model: nn.Module,
    data: str | ClassificationDataModule = "digits",
    corruptions: str | Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
    released: str | Path | None = None,
    eval: str = "noise",
    name: str = "model",
    device: str | torch.device | None = None,
    **options: Any,
) -> Report:
    """Clean and corrupted accuracy of ``model`` (images in [0, 1] -> logits) on ``data``'s test split.

    ``corruptions``: a list of corruption names, ``"mnist-c"``, ``"imagenet-c"`` (the 15 of mCE), ``"all"`` or a
    group (``noise``, ``blur``, ``weather``, ``digital``, ``extra``); default: those of ``conf/eval/<eval>.yaml``.
    ``released``: the root of the released -C files of ``data`` (CIFAR-10-C, MNIST-C, ...), evaluated instead of
    generated corruptions. ``options``: any other ``eval.*`` key, e.g. ``max_images=200``, ``seed=1``,
    ``gaussian_sigmas=[0.1, 0.5]``, ``attacks={"enabled": True, "autoattack": {...}}``.
    """
    data_name = data if isinstance(data, str) else "digits"
    overrides = [f"data={data_name}", f"eval={eval}"]
    if corruptions == "mnist-c":
        overrides[1], corruptions = "eval=mnist_c_generated", None
    if released is not None:
        dm_name = data if isinstance(data, str) else data.name.split("+")[0]
        if dm_name not in RELEASED_KIND:
            raise ConfigError(f"no released -C set is known for data {dm_name!r}: use one of {sorted(RELEASED_KIND)}")
        overrides[1] = f"eval={RELEASED_KIND[dm_name]}"
    cfg = compose_config(overrides)
    datamodule = load_data(data) if isinstance(data, str) else data
    if not isinstance(data, str):  # the interpolations of the eval config read these from the data config
        cfg.data = {"corruption_preset": datamodule.corruption_preset, "eval_batch_size": datamodule.eval_batch_size}
    ev = cfg.eval
    if isinstance(corruptions, str):
        if corruptions not in CORRUPTION_SETS:
            raise ConfigError(
                f"unknown corruption set {corruptions!r}: use a list or one of mnist-c, {', '.join(CORRUPTION_SETS)}"
            )
        corruptions = CORRUPTION_SETS[corruptions]
    if corruptions is not None:
        ev.corruptions = list(corruptions)
    if severities is not None:
        ev.severities = list(severities)
    if released is not None:
        ev.released.root = str(released)
    ev.merge_with(options)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval().to(device)
    try:
        holder = SimpleNamespace(classifier=model, device=device)  # what adversarial_generators reads of a method
        generators, noise_epsilon = adversarial_generators(ev.get("adversarial_noise") or {}, holder, datamodule)
        suite = corruption_suite(ev, datamodule, generators, noise_epsilon)
        suite.reset(device)
        with torch.inference_mode():
            for loader, batches in enumerate(suite.dataloaders()):
                for x, y, index in batches:
                    suite.evaluate_batch(model, x.to(device), y.to(device), index.to(device), loader=loader)
        # no training seed: the model comes from outside
        report = evaluation_report(ev, suite, model, datamodule, method=name, run_name=name, model=type(model).__name__)
    finally:
        model.train(was_training)
    return Report(**vars(report))
