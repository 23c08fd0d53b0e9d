"""Classifiers by name for images in [0, 1] (normalised inside): Madry CNN, pre-activation ResNets, torchvision's."""

from collections.abc import Callable, Sequence

import torch
import torchvision
from torch import Tensor, nn

from robustnoise.models.madry_cnn import MadryCNN
from robustnoise.models.preact_resnet import PreActResNet
from robustnoise.models.weights import load_classifier_weights
from robustnoise.utils.errors import ConfigError, RobustnoiseError


class NormalizedClassifier(nn.Module):
    """``(x - mean) / std`` before ``net``; 1-channel batches for 3-channel nets are repeated to RGB."""

    mean: Tensor
    std: Tensor

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float], net_in_chans: int) -> None:
        super().__init__()
        self.net, self.net_in_chans = net, net_in_chans
        for label, values in (("mean", mean), ("std", std)):
            t = torch.as_tensor(list(values), dtype=torch.float32)
            if t.ndim != 1 or len(t) not in (1, net_in_chans):
                raise ConfigError(f"{label} must have 1 or {net_in_chans} values (channels), got {list(t.tolist())}")
            self.register_buffer(label, t.view(1, -1, 1, 1))
        if (self.std <= 0).any():
            raise ConfigError(f"std must be positive, got {self.std.flatten().tolist()}")

    def forward(self, x: Tensor) -> Tensor:
        """Maps a batch ``(N, C, H, W)`` in [0, 1] to logits."""
        channels = x.shape[1]
        if channels == 1 and self.net_in_chans == 3:
            x = x.expand(-1, 3, -1, -1)
        elif channels != self.net_in_chans:
            raise ValueError(f"input has {channels} channels but the network expects {self.net_in_chans}")
        return self.net((x - self.mean) / self.std)


# Our own architectures: (num_classes, in_chans, image_size) -> net.
_OWN: dict[str, Callable[[int, int, int], nn.Module]] = {
    "madry_cnn": lambda n, c, s: MadryCNN(n, in_chans=c, image_size=s),
    "preact_resnet18": lambda n, c, s: PreActResNet(False, (2, 2, 2, 2), n, c),  # basic blocks
    "preact_resnet50": lambda n, c, s: PreActResNet(True, (3, 4, 6, 3), n, c),  # bottleneck blocks
}
# torchvision constructor name -> attribute holding the classification head.
_TORCHVISION_HEADS = {"resnet18": "fc", "resnet50": "fc", "densenet121": "classifier", "inception_v3": "fc"}


def list_models() -> list[str]:
    """Returns the names accepted by ``create_model``."""
    return sorted([*_OWN, *_TORCHVISION_HEADS])


def _build_torchvision(name: str, num_classes: int, weights: str | None) -> nn.Module:
    """A torchvision net, random or with the ImageNet weights of ``"torchvision"`` / ``"torchvision:ENUM_NAME"``."""
    builder = getattr(torchvision.models, name)
    if weights is None:
        kwargs = {"aux_logits": False, "init_weights": True} if name == "inception_v3" else {}
        return builder(weights=None, num_classes=num_classes, **kwargs)
    enum_name = weights.partition(":")[2] or "IMAGENET1K_V1"  # ResNet-50 V1: the GNT/ANT papers' vanilla baseline
    enum_cls = torchvision.models.get_model_weights(name)
    if enum_name not in enum_cls.__members__:
        known = ", ".join(m.name for m in enum_cls)
        raise RobustnoiseError(f"unknown torchvision weights {enum_name!r} for {name}; known: {known}")
    if name == "inception_v3":  # torchvision insists on the auxiliary head when loading Inception weights: dropped
        net = builder(weights=enum_cls[enum_name], aux_logits=True)
        net.aux_logits, net.AuxLogits = False, None
    else:
        net = builder(weights=enum_cls[enum_name])
    head = getattr(net, _TORCHVISION_HEADS[name])
    if head.out_features != num_classes:
        setattr(net, _TORCHVISION_HEADS[name], nn.Linear(head.in_features, num_classes))
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
    """The classifier ``name``; ``weights``: None (random), ``torchvision[:ENUM]`` or a checkpoint path."""
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
