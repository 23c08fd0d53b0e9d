"""The notebook API: methods from ``conf/method`` YAML; any ``nn.Module`` evaluated as ``task=eval`` does."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from omegaconf import OmegaConf

from robustnoise.corruptions.presets import ALL_CORRUPTIONS, BENCHMARK_CORRUPTIONS, CORRUPTION_GROUPS
from robustnoise.data import ClassificationDataModule
from robustnoise.data.released_c import RELEASED_C_KIND_OF_DATA
from robustnoise.eval.evaluate import adversarial_generators, corruption_suite, evaluation_report
from robustnoise.methods.base import RobustClassifierModule
from robustnoise.methods.configs import compose_config, method_from_yaml
from robustnoise.report.reporting import Report
from robustnoise.utils import resolvers  # noqa: F401  (registers the rn.* resolvers the configs use)
from robustnoise.utils.errors import ConfigError
from robustnoise.utils.instantiate import instantiate

CORRUPTION_SETS = {"imagenet-c": BENCHMARK_CORRUPTIONS, "all": ALL_CORRUPTIONS, **CORRUPTION_GROUPS}  # corruptions=


def load_data(name: str = "digits", **overrides: Any) -> ClassificationDataModule:
    """The DataModule of ``conf/data/<name>.yaml`` (``overrides``: its keys, e.g. ``root=``), set up for testing."""
    datamodule = instantiate(OmegaConf.merge(compose_config([f"data={name}"]).data, overrides))
    datamodule.setup("test")
    return datamodule


def build_method(
    name: str, data: str | ClassificationDataModule = "digits", model: str | dict[str, Any] = "madry_cnn", **kw: Any
) -> RobustClassifierModule:
    """``conf/method/<name>.yaml``'s LightningModule with keys ``kw`` for ``data``; ``model``: a name or settings."""
    datamodule = load_data(data) if isinstance(data, str) else data
    if isinstance(model, str):
        model = OmegaConf.to_container(compose_config([f"model={model}"]).model, resolve=True)  # type: ignore[assignment]
    return method_from_yaml(name, data=datamodule.info(), model=dict(model), **kw)


def evaluate_robustness(
    model: torch.nn.Module,
    data: str | ClassificationDataModule = "digits",
    corruptions: str | Sequence[str] | None = None,
    released: str | Path | None = None,
    eval: str = "noise",
    name: str = "model",
    **options: Any,
) -> Report:
    """Clean and corrupted accuracy of ``model`` (on its device) on ``data``'s test split; ``corruptions``: a list, a
    :data:`CORRUPTION_SETS` name or ``"mnist-c"``; ``released``: the root of the released -C files to evaluate
    instead; ``options``: ``eval.*`` keys."""
    if corruptions == "mnist-c":
        eval, corruptions = "mnist_c_generated", None
    elif isinstance(corruptions, str) and corruptions not in CORRUPTION_SETS:
        names = ", ".join(CORRUPTION_SETS)
        raise ConfigError(f"unknown corruption set {corruptions!r}: use a list or one of mnist-c, {names}")
    if corruptions is not None:
        options["corruptions"] = list(CORRUPTION_SETS[corruptions] if isinstance(corruptions, str) else corruptions)
    if released is not None:
        data_name = data if isinstance(data, str) else data.name.split("+")[0]
        if data_name not in RELEASED_C_KIND_OF_DATA:
            raise ConfigError(
                f"no released -C set is known for data {data_name!r}: use one of {sorted(RELEASED_C_KIND_OF_DATA)}"
            )
        eval, options["released"] = RELEASED_C_KIND_OF_DATA[data_name], {"root": str(released)}
    datamodule = load_data(data) if isinstance(data, str) else data
    cfg = compose_config([f"eval={eval}"])  # of the data config, the eval config reads only these:
    cfg.data = {"corruption_preset": datamodule.corruption_preset, "eval_batch_size": datamodule.eval_batch_size}
    ev = cfg.eval
    ev.merge_with(options)
    device, was_training = next(model.parameters()).device, model.training
    model.eval()
    try:
        host = SimpleNamespace(classifier=model, device=device)  # what adversarial_generators reads of a method
        noise = adversarial_generators(ev.get("adversarial_noise") or {}, host, datamodule)  # (generators, epsilon)
        suite = corruption_suite(ev, datamodule, *noise)
        suite.reset(device)
        with torch.inference_mode():
            for loader, batches in enumerate(suite.dataloaders()):
                for x, y, index in batches:
                    suite.evaluate_batch(model, x.to(device), y.to(device), index.to(device), loader=loader)
        return evaluation_report(ev, suite, model, datamodule, method=name, run_name=name, model=type(model).__name__)
    finally:
        model.train(was_training)
