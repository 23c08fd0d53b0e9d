"""Weight files (classifiers, EDSR, AdaIN) read with ``weights_only``, wrapper prefixes stripped, one-line errors."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from robustnoise.utils.errors import CheckpointError

WRAPPER_PREFIXES = ("module.", "model.", "resnet.", "classifier.", "net.")  # DataParallel, Lightning, wrappers


def read_weights(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """``torch.load`` with ``weights_only`` (no code runs); a missing or unreadable file: :class:`CheckpointError`."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} not found at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unpickling failure (corrupt file, non-weights objects) is a user-facing problem
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot read {what} {path}: {first_line}") from e


def extract_state_dict(obj: Any, target_keys: Collection[str], source: str) -> dict[str, Tensor]:
    """The bare state dict of a checkpoint, release or state dict, prefixes stripped until a key fits ``target_keys``
    (``classifier.weight`` is DenseNet's head)."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a dict, got {type(obj).__name__}")
    containers = ("state_dict", "model_state_dict", "params_ema", "params")
    state = next((obj[k] for k in containers if isinstance(obj.get(k), Mapping)), obj)
    if isinstance(obj.get("state_dict"), Mapping) and any(k.startswith("classifier.") for k in state):
        state = {k: v for k, v in state.items() if k.startswith("classifier.")}
    tensors = {str(k): v for k, v in state.items() if isinstance(v, Tensor)}
    if not tensors:
        raise CheckpointError(f"{source}: no tensors found (top-level keys: {', '.join(map(str, list(obj)[:5]))})")
    out: dict[str, Tensor] = {}
    for key, value in tensors.items():
        *path, name = key.split(".")
        if name in ("mean", "std") and all(f"{p}." in WRAPPER_PREFIXES for p in path):
            continue
        while key not in target_keys and key.startswith(WRAPPER_PREFIXES) and "." in key.split(".", 1)[1]:
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def _count(keys: list[str], what: str) -> str:
    shown = f" (e.g. {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})" if keys else ""
    return f"{len(keys)} {what} keys{shown}"


def load_checked(module: nn.Module, state: Mapping[str, Tensor], what: str, optional: tuple[str, ...] = ()) -> None:
    """Load ``state`` after checking keys and shapes (one ``{what}: ...`` line); ``optional`` keys may be absent."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not any(o in k for o in optional)]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise CheckpointError(f"{what}: {_count(missing, 'missing')}, {_count(unexpected, 'unexpected')}")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise CheckpointError(
                f"{what}: {key} has shape {tuple(value.shape)} in the file, {tuple(expected[key].shape)} in the model"
            )
    module.load_state_dict(state, strict=False)


def load_classifier_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Load the network weights of ``path`` into ``model.net`` (mean/std kept); a misfit: :class:`CheckpointError`."""
    path = os.fspath(path)
    state = extract_state_dict(read_weights(path), model.net.state_dict().keys(), f"checkpoint {path}")
    # BatchNorm fills a missing num_batches_tracked itself (checkpoints from old torch versions lack it)
    what = f"checkpoint {path} does not fit {type(model.net).__name__}"
    load_checked(model.net, state, what, optional=("num_batches_tracked",))
