"""Pre-activation ResNets for 32x32 inputs (He et al. 2016, "Identity Mappings in Deep Residual Networks")."""

from torch import Tensor, nn


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class PreActBlock(nn.Module):
    """Basic block: BN-ReLU-conv3x3, BN-ReLU-conv3x3, plus identity or 1x1-conv shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.relu = nn.ReLU(inplace=True)
        out_planes = planes * self.expansion
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(x))
        # A projection shortcut takes the pre-activated input; the identity shortcut keeps the raw one.
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + shortcut


class PreActBottleneck(nn.Module):
    """Bottleneck block: BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1 (x4 channels), plus shortcut."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, kernel_size=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """CIFAR-style pre-activation ResNet: 3x3 stem without max-pool, four stages, BN-ReLU, global pool, linear.

    Args:
        block: ``PreActBlock`` or ``PreActBottleneck``.
        num_blocks: Number of blocks in each of the four stages.
        num_classes: Number of output logits.
        in_chans: Number of input channels.
    """

    def __init__(
        self,
        block: type[PreActBlock] | type[PreActBottleneck],
        num_blocks: tuple[int, int, int, int],
        num_classes: int,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_chans, 64)
        in_planes = 64
        stages = []
        for planes, stride, n in zip((64, 128, 256, 512), (1, 2, 2, 2), num_blocks):
            layers = []
            for s in [stride] + [1] * (n - 1):
                layers.append(block(in_planes, planes, s))
                in_planes = planes * block.expansion
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
    return PreActResNet(PreActBlock, (2, 2, 2, 2), num_classes, in_chans)


def preact_resnet50(num_classes: int, in_chans: int = 3) -> PreActResNet:
    """Pre-activation ResNet-50 (bottleneck blocks 3-4-6-3)."""
    return PreActResNet(PreActBottleneck, (3, 4, 6, 3), num_classes, in_chans)
