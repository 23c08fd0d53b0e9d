"""Pre-activation ResNets (He et al. 2016, "Identity Mappings in Deep Residual Networks")."""

from __future__ import annotations

from torch import Tensor, nn


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
        projection = stride != 1 or in_planes != out_planes
        self.shortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False) if projection else None

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
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        return self.linear(self.relu(self.bn(x)).mean(dim=(2, 3)))  # global average pool
