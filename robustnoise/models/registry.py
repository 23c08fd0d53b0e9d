"""The classifiers (images in [0, 1], normalised inside), their registry and weight files: Madry et al.'s (2018)
MNIST CNN, pre-activation ResNets (He et al. 2016, "Identity Mappings in Deep Residual Networks"), torchvision
nets."""

import os
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import torch
import torchvision
from torch import Tensor, nn

from robustnoise.utils.errors import CheckpointError, ConfigError, RobustnoiseError


class NormalizedClassifier(nn.Module):
    """``(x - mean) / std`` before ``net``; 1-channel batches for 3-channel nets are repeated to RGB."""

    mean: Tensor
    std: Tensor

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float], net_in_chans: int) -> None:
        super().__init__()
        mean_t = torch.as_tensor(list(mean), dtype=torch.float32)
        std_t = torch.as_tensor(list(std), dtype=torch.float32)
        for label, t in (("mean", mean_t), ("std", std_t)):
            if t.ndim != 1 or len(t) not in (1, net_in_chans):
                raise ConfigError(f"{label} must have 1 or {net_in_chans} values (channels), got {list(t.tolist())}")
        if (std_t <= 0).any():
            raise ConfigError(f"std must be positive, got {std_t.tolist()}")
        self.net = net
        self.net_in_chans = net_in_chans
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1))
        self.register_buffer("std", std_t.view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Maps a batch ``(N, C, H, W)`` in [0, 1] to logits."""
        channels = x.shape[1]
        if channels == 1 and self.net_in_chans == 3:
            x = x.expand(-1, 3, -1, -1)
        elif channels != self.net_in_chans:
            raise ValueError(f"input has {channels} channels but the network expects {self.net_in_chans}")
        return self.net((x - self.mean) / self.std)


class MadryCNN(nn.Module):
    """Two 5x5 conv + max-pool stages (32, 64 channels), a 1024-unit hidden layer sized for ``image_size`` inputs."""

    def __init__(self, num_classes: int, in_chans: int = 1, image_size: int = 28) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 32, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=5, padding=2)
        self.pool = nn.MaxPool2d(2)
        self.relu = nn.ReLU(inplace=True)
        self.fc1 = nn.Linear(64 * (image_size // 4) ** 2, 1024)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = self.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


class PreActBlock(nn.Module):
    """Pre-activation basic (3x3, 3x3) or bottleneck (1x1, 3x3, 1x1 x4) block with identity or 1x1 shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int, bottleneck: bool) -> None:
        super().__init__()
        out_planes = planes * (4 if bottleneck else 1)
        if bottleneck:  # (in, out, kernel size, stride) of each conv
            convs = [(in_planes, planes, 1, 1), (planes, planes, 3, stride), (planes, out_planes, 1, 1)]
        else:
            convs = [(in_planes, planes, 3, stride), (planes, planes, 3, 1)]
        self.depth = len(convs)
        for k, (c_in, c_out, size, s) in enumerate(convs, 1):
            self.add_module(f"bn{k}", nn.BatchNorm2d(c_in))
            self.add_module(f"conv{k}", nn.Conv2d(c_in, c_out, size, stride=s, padding=size // 2, bias=False))
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(x))
        # A projection shortcut takes the pre-activated input; the identity shortcut keeps the raw one.
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        for k in range(2, self.depth + 1):
            out = getattr(self, f"conv{k}")(self.relu(getattr(self, f"bn{k}")(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """CIFAR-style pre-activation ResNet: 3x3 stem, four stages, BN-ReLU, global pool, linear."""

    def __init__(self, bottleneck: bool, num_blocks: tuple[int, ...], num_classes: int, in_chans: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, padding=1, bias=False)
        in_planes = 64
        stages = []
        for planes, stride, n in zip((64, 128, 256, 512), (1, 2, 2, 2), num_blocks):
            layers = []
            for s in [stride] + [1] * (n - 1):
                layers.append(PreActBlock(in_planes, planes, s, bottleneck))
                in_planes = planes * (4 if bottleneck else 1)
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn = nn.BatchNorm2d(in_planes)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.pool(self.relu(self.bn(x)))
        return self.linear(x.flatten(1))


def preact_resnet18(num_classes: int, in_chans: int = 3) -> PreActResNet:
    """Pre-activation ResNet-18 (basic blocks 2-2-2-2)."""
    return PreActResNet(False, (2, 2, 2, 2), num_classes, in_chans)


def preact_resnet50(num_classes: int, in_chans: int = 3) -> PreActResNet:
    """Pre-activation ResNet-50 (bottleneck blocks 3-4-6-3)."""
    return PreActResNet(True, (3, 4, 6, 3), num_classes, in_chans)


# Our own architectures: (num_classes, in_chans, image_size) -> net.
_OWN: dict[str, Callable[[int, int, int], nn.Module]] = {
    "madry_cnn": lambda n, c, s: MadryCNN(n, in_chans=c, image_size=s),
    "preact_resnet18": lambda n, c, s: preact_resnet18(n, in_chans=c),
    "preact_resnet50": lambda n, c, s: preact_resnet50(n, in_chans=c),
}
# torchvision constructor name -> attribute holding the classification head.
_TORCHVISION_HEADS = {"resnet18": "fc", "resnet50": "fc", "densenet121": "classifier", "inception_v3": "fc"}
_DEFAULT_TORCHVISION_WEIGHTS = "IMAGENET1K_V1"  # ResNet-50 V1 is the vanilla baseline of the GNT/ANT papers


def list_models() -> list[str]:
    """Returns the names accepted by ``create_model``."""
    return sorted([*_OWN, *_TORCHVISION_HEADS])


def _build_torchvision(name: str, num_classes: int, weights: str | None) -> nn.Module:
    """A torchvision net, random or with the ImageNet weights of ``"torchvision"`` / ``"torchvision:ENUM_NAME"``."""
    builder = getattr(torchvision.models, name)
    if weights is None:
        kwargs = {"aux_logits": False, "init_weights": True} if name == "inception_v3" else {}
        return builder(weights=None, num_classes=num_classes, **kwargs)
    enum_name = weights.partition(":")[2] or _DEFAULT_TORCHVISION_WEIGHTS
    enum_cls = torchvision.models.get_model_weights(name)
    if enum_name not in enum_cls.__members__:
        known = ", ".join(m.name for m in enum_cls)
        raise RobustnoiseError(f"unknown torchvision weights {enum_name!r} for {name}; known: {known}")
    if name == "inception_v3":  # torchvision insists on the auxiliary head when loading Inception weights: dropped
        net = builder(weights=enum_cls[enum_name], aux_logits=True)
        net.aux_logits, net.AuxLogits = False, None
    else:
        net = builder(weights=enum_cls[enum_name])
    head_attr = _TORCHVISION_HEADS[name]
    head = getattr(net, head_attr)
    if head.out_features != num_classes:
        setattr(net, head_attr, nn.Linear(head.in_features, num_classes))
    return net


def create_model(
    name: str,
    num_classes: int,
    in_chans: int = 3,
    mean: Sequence[float] = (0.0,),
    std: Sequence[float] = (1.0,),
    weights: str | None = None,
    image_size: int = 224,
) -> NormalizedClassifier:
    """The classifier ``name`` for images in [0, 1]; ``weights``: None (random), ``torchvision[:ENUM]`` (new head for
    other class counts) or a checkpoint path."""
    is_tv_weights = weights is not None and weights.split(":", 1)[0] == "torchvision"
    if name in _OWN:
        if is_tv_weights:
            raise RobustnoiseError(f"torchvision weights are not available for {name}")
        net, net_in_chans = _OWN[name](num_classes, in_chans, image_size), in_chans
    elif name in _TORCHVISION_HEADS:
        if in_chans not in (1, 3):
            raise RobustnoiseError(f"{name} takes 1- or 3-channel images, got in_chans={in_chans}")
        net, net_in_chans = _build_torchvision(name, num_classes, weights if is_tv_weights else None), 3
    else:
        raise RobustnoiseError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    model = NormalizedClassifier(net, mean, std, net_in_chans)
    if weights is not None and not is_tv_weights:
        load_classifier_weights(model, weights)
    return model


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
    """The bare state dict of a Lightning checkpoint (``classifier.*``), game-of-noise release, BasicSR file or state
    dict; wrapper prefixes stripped until a key fits ``target_keys`` (``classifier.weight`` is DenseNet's head)."""
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


def load_classifier_weights(model: NormalizedClassifier, path: str | os.PathLike) -> None:
    """Load the network weights of ``path`` into ``model.net`` (mean/std kept); a misfit: :class:`CheckpointError`."""
    path = os.fspath(path)
    state = extract_state_dict(read_weights(path), model.net.state_dict().keys(), f"checkpoint {path}")
    # BatchNorm fills a missing num_batches_tracked itself (checkpoints from old torch versions lack it)
    what = f"checkpoint {path} does not fit {type(model.net).__name__}"
    load_checked(model.net, state, what, optional=("num_batches_tracked",))
