"""Loading classifier weights from this framework's checkpoints, the game-of-noise release files or state dicts."""

import os
from collections.abc import Collection, Mapping

import torch
from torch import Tensor

from robustnoise.models.normalized import NormalizedClassifier
from robustnoise.utils.errors import CheckpointError

# Prefixes added by DataParallel, Lightning modules and model wrappers.
WRAPPER_PREFIXES = ("module.", "model.", "resnet.", "classifier.", "net.")
_NORM_KEYS = ("mean", "std")
_MAX_EXAMPLES = 3


def _strip_prefixes(key: str, target_keys: Collection[str] | None) -> str:
    while target_keys is None or key not in target_keys:
        prefix = next((p for p in WRAPPER_PREFIXES if key.startswith(p)), None)
        # Stop before the last component: in "classifier.weight" (DenseNet head) the prefix is a real module name.
        if prefix is None or "." not in key[len(prefix) :]:
            break
        key = key[len(prefix) :]
    return key


def _is_norm_key(key: str) -> bool:
    *path, name = key.split(".")
    return name in _NORM_KEYS and all(f"{p}." in WRAPPER_PREFIXES for p in path)


def extract_state_dict(obj: Mapping, target_keys: Collection[str] | None = None) -> dict[str, Tensor]:
    """Returns the bare network state dict held by a loaded checkpoint.

    Accepts a Lightning checkpoint (``state_dict``; only ``classifier.*`` keys are kept when present), a
    game-of-noise release file (``model_state_dict``) or a bare state dict. Wrapper prefixes are stripped and
    the wrapper's ``mean``/``std`` buffers are dropped.

    Args:
        obj: The object returned by ``torch.load``.
        target_keys: Keys of the receiving network; prefix stripping stops once a key matches one of them.

    Raises:
        CheckpointError: If ``obj`` holds no tensors.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"expected a dict, got {type(obj).__name__}")
    if isinstance(obj.get("state_dict"), Mapping):
        state = obj["state_dict"]
        if any(k.startswith("classifier.") for k in state):
            state = {k: v for k, v in state.items() if k.startswith("classifier.")}
    elif isinstance(obj.get("model_state_dict"), Mapping):
        state = obj["model_state_dict"]
    else:
        state = obj
    tensors = {str(k): v for k, v in state.items() if isinstance(v, Tensor)}
    if not tensors:
        raise CheckpointError(f"no tensors found (top-level keys: {', '.join(map(str, list(obj)[:5]))})")
    out: dict[str, Tensor] = {}
    for key, value in tensors.items():
        if _is_norm_key(key):
            continue
        out[_strip_prefixes(key, target_keys)] = value
    return out


def _count(keys: list[str], what: str) -> str:
    if not keys:
        return f"0 {what} keys"
    more = ", ..." if len(keys) > _MAX_EXAMPLES else ""
    return f"{len(keys)} {what} keys (e.g. {', '.join(keys[:_MAX_EXAMPLES])}{more})"


def load_classifier_weights(model: NormalizedClassifier, path: str | os.PathLike) -> None:
    """Loads network weights from ``path`` into ``model.net`` (strict); the model's mean/std are kept.

    Raises:
        CheckpointError: If the file is missing, unreadable or does not fit the architecture.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unpickling failure (corrupt file, non-weights objects) is a user-facing problem
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first_line}") from e

    net = model.net
    arch = type(net).__name__
    expected = net.state_dict()
    try:
        state = extract_state_dict(obj, target_keys=expected.keys())
    except CheckpointError as e:
        raise CheckpointError(f"checkpoint {path}: {e}") from None

    # BatchNorm fills a missing num_batches_tracked itself (checkpoints from old torch versions lack it).
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path} does not fit {arch}: {_count(missing, 'missing')}, {_count(unexpected, 'unexpected')}"
        )
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise CheckpointError(
                f"checkpoint {path} does not fit {arch}: {key} has shape {tuple(value.shape)} in the checkpoint "
                f"but {tuple(expected[key].shape)} in the model"
            )
    net.load_state_dict(state, strict=True)
