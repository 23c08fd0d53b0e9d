"""torchvision ``transforms.v2`` wrappers around :func:`robustnoise.corruptions.corrupt`.

Inputs: an image (C, H, W) or a batch (N, C, H, W) as a float tensor in [0, 1], a ``tv_tensors.Image`` (float or
uint8) or a PIL image (``L`` or ``RGB``); the rest of a sample passes through. Image ``k`` of a call is seeded by
``sample_seeds(seed, index[k], corruption_id(name), severity)``, ``index`` being the call's ``index=`` argument
(default: the position in the batch), so with the dataset index an image gets the evaluation's corruption. uint8 is
scaled like ``v2.ToDtype(torch.float32, scale=True)`` and converted back by truncation, like ``np.uint8``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from typing import Any

import PIL.Image
import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from robustnoise.corruptions.api import corrupt
from robustnoise.corruptions.fidelity import quantize_uint8_truncate
from robustnoise.corruptions.presets import (
    BENCHMARK_CORRUPTIONS,
    SEVERITIES,
    as_int,
    check_corruption,
    check_severity,
    corruption_seed_key,
)
from robustnoise.corruptions.registry import lookup
from robustnoise.corruptions.rng import sample_seeds
from robustnoise.utils.errors import RobustnoiseError

__all__ = ["Corrupt", "RandomCorrupt", "check_corruption", "corruption_seed_key", "image_seeds", "to_float_image"]

_INDEX: contextvars.ContextVar[Any] = contextvars.ContextVar("robustnoise_corrupt_index", default=None)


def image_seeds(base_seed: int, index: Tensor, name: str, severity: int) -> Tensor:
    """Per-image seeds of ``corrupt``: ``sample_seeds(base_seed, index, key(name), severity)`` (int64, like index)."""
    return sample_seeds(int(base_seed), index, corruption_seed_key(name), int(severity))


def to_float_image(image: Any) -> Tensor:
    """An image (or batch) as a contiguous float tensor in [0, 1]: float tensors as they are, uint8 tensors and PIL
    images scaled like the clean pipelines' ``v2.ToDtype(torch.float32, scale=True)``."""
    if isinstance(image, PIL.Image.Image):
        image = TF.pil_to_tensor(image)
    if not isinstance(image, Tensor):
        raise RobustnoiseError(f"images must be tensors or PIL images, got {type(image).__name__}")
    image = image.as_subclass(Tensor)
    if image.dtype == torch.uint8:
        image = TF.to_dtype(image, torch.float32, scale=True)
    elif not image.dtype.is_floating_point:
        raise RobustnoiseError(f"images must be float in [0, 1] or uint8, got {image.dtype}")
    return image.contiguous()  # reductions (e.g. contrast's mean) may round differently on other memory layouts


def _index_tensor(index: Any, num_images: int, device: torch.device) -> Tensor:
    """The per-image indices of a call as an int64 tensor (num_images,) on ``device``."""
    if index is None:
        return torch.arange(num_images, device=device)
    tensor = torch.as_tensor(index, device=device)
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise RobustnoiseError(f"index must be an integer or an integer tensor, got {tensor.dtype}")
    tensor = tensor.to(torch.int64).reshape(-1)
    if tensor.numel() != num_images:
        raise RobustnoiseError(f"index has {tensor.numel()} entries for {num_images} image(s)")
    return tensor


def _is_pure_tensor(inpt: Any) -> bool:
    return isinstance(inpt, Tensor) and not isinstance(inpt, tv_tensors.TVTensor)


class _CorruptionTransform(v2.Transform):
    """Shared input handling around one ``corrupt`` call; subclasses' ``make_params`` choose name, severity and seed."""

    _transformed_types = (tv_tensors.Image, PIL.Image.Image, _is_pure_tensor)

    def __init__(self, preset: str) -> None:
        super().__init__()
        self.preset = str(preset)

    def forward(self, *inputs: Any, index: Any = None) -> Any:
        """Transform a sample; ``index``: the dataset index (int) of a single image or the indices (N,) of a batch."""
        token = _INDEX.set(index)
        try:
            return super().forward(*inputs)
        finally:
            _INDEX.reset(token)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, PIL.Image.Image):
            if inpt.mode not in ("L", "RGB"):
                raise RobustnoiseError(f"PIL images must have mode L or RGB, got {inpt.mode}")
            return TF.to_pil_image(self._apply(TF.pil_to_tensor(inpt), params), mode=inpt.mode)
        if not isinstance(inpt, Tensor):
            return inpt
        out = self._apply(inpt.as_subclass(Tensor), params)
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.Image) else out

    def _apply(self, image: Tensor, params: dict[str, Any]) -> Tensor:
        if image.dim() not in (3, 4):
            raise RobustnoiseError(f"expected an image (C, H, W) or a batch (N, C, H, W), got {tuple(image.shape)}")
        single = image.dim() == 3
        is_uint8 = image.dtype == torch.uint8
        batch = to_float_image(image.unsqueeze(0) if single else image)
        name, severity = params["name"], params["severity"]
        index = _index_tensor(_INDEX.get(), batch.shape[0], batch.device)
        out = corrupt(batch, name, severity, self.preset, image_seeds(params["seed"], index, name, severity))
        if is_uint8:
            out = quantize_uint8_truncate(out)
        return out.squeeze(0) if single else out


class Corrupt(_CorruptionTransform):
    """Apply corruption ``name`` at ``severity`` (1..5) with the ``preset`` table (``imagenet``, ``cifar``,
    ``tinyimagenet`` or ``mnistc``), deterministic given the base ``seed`` and the call's ``index``.

    Call as ``t(image)``, ``t(batch)``, ``t(image, label)`` (any sample structure) or with the dataset index,
    ``t(image, index=i)`` / ``t(batch, index=indices)``, which makes each image's corruption the evaluation's.
    """

    def __init__(self, name: str, severity: int, preset: str = "imagenet", seed: int = 0) -> None:
        super().__init__(preset)
        self.name = lookup(str(name), self.preset).name
        self.severity = check_severity(severity)
        self.seed = as_int(seed, f"seed must be an int, got {type(seed).__name__}")

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"name": self.name, "severity": self.severity, "seed": self.seed}


class RandomCorrupt(_CorruptionTransform):
    """Apply one (corruption, severity) drawn uniformly per call: training-time augmentation.

    ``corruptions`` default to the 15 benchmark ones. ``seed=None`` draws the choice and the base seed from torch's
    global RNG (which the DataLoader seeds per worker and epoch); an int uses a private generator (a reproducible
    sequence per instance, copied into every DataLoader worker: pass ``index=`` or use ``None`` there).
    """

    def __init__(
        self,
        corruptions: Sequence[str] | None = None,
        severities: Sequence[int] = SEVERITIES,
        preset: str = "imagenet",
        seed: int | None = None,
    ) -> None:
        super().__init__(preset)
        corruptions = BENCHMARK_CORRUPTIONS if corruptions is None else corruptions
        corruptions = [corruptions] if isinstance(corruptions, str) else corruptions
        self.corruptions = tuple(lookup(str(c), self.preset).name for c in corruptions)
        self.severities = tuple(check_severity(s) for s in severities)
        if not self.corruptions or not self.severities:
            raise RobustnoiseError("RandomCorrupt needs at least one corruption and one severity")
        self.seed = None if seed is None else as_int(seed, f"seed must be an int, got {type(seed).__name__}")
        self._generator = None if self.seed is None else torch.Generator().manual_seed(self.seed)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        draws = torch.randint(0, 2**62, (3,), generator=self._generator).tolist()
        name = self.corruptions[draws[0] % len(self.corruptions)]
        return {"name": name, "severity": self.severities[draws[1] % len(self.severities)], "seed": draws[2]}
