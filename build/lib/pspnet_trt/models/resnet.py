"""ResNet with the 3x3 deep stem ("V1c") and dilation, as sssegmentation builds it.

Attribute names (``stem.N``, ``layerN.i.conv1`` ...) are the state-dict names of sssegmentation's
checkpoints; do not rename them.
"""

from __future__ import annotations

from typing import List, Optional, Tuple, Type, Union

import torch
from torch import nn

# output stride -> (strides, dilations) of layer1..layer4
STRIDES_DILATIONS = {
    8: ((1, 2, 1, 1), (1, 1, 2, 4)),
    16: ((1, 2, 2, 1), (1, 1, 1, 2)),
    32: ((1, 2, 2, 2), (1, 1, 1, 1)),
}


class BasicBlock(nn.Module):
    """Two 3x3 convs; only the first one is strided and dilated (sssegmentation's layout)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride and dilation here, "pytorch" style) -> 1x1, expansion 4."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = Union[Type[BasicBlock], Type[Bottleneck]]
ARCH = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}


def make_layer(block: Block, inplanes: int, planes: int, num_blocks: int, stride: int, dilation: int) -> nn.Sequential:
    """One ResNet stage. ``contract_dilation``: the first block of a dilated stage uses dilation // 2."""
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, 1, stride=stride, bias=False),
            nn.BatchNorm2d(planes * block.expansion),
        )
    first_dilation = dilation // 2 if dilation > 1 else 1
    layers = [block(inplanes, planes, stride, first_dilation, downsample)]
    layers += [block(planes * block.expansion, planes, 1, dilation) for _ in range(1, num_blocks)]
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    """Deep-stem ResNet ("resnetXXconv3x3stem") returning the outputs of layer1..layer4."""

    def __init__(self, depth: int = 50, output_stride: int = 8, in_channels: int = 3, stem_channels: int = 64,
                 base_channels: int = 64) -> None:
        super().__init__()
        if depth not in ARCH:
            raise ValueError(f"ResNet depth must be one of {sorted(ARCH)}, got {depth}")
        if output_stride not in STRIDES_DILATIONS:
            raise ValueError(f"output stride must be one of {sorted(STRIDES_DILATIONS)}, got {output_stride}")
        block, num_blocks = ARCH[depth]
        strides, dilations = STRIDES_DILATIONS[output_stride]
        half = stem_channels // 2
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, half, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
            nn.Conv2d(half, half, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
            nn.Conv2d(half, stem_channels, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(stem_channels),
            nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = stem_channels
        planes = [base_channels * 2**i for i in range(4)]
        self.layer1 = make_layer(block, inplanes, planes[0], num_blocks[0], strides[0], dilations[0])
        self.layer2 = make_layer(block, planes[0] * block.expansion, planes[1], num_blocks[1], strides[1], dilations[1])
        self.layer3 = make_layer(block, planes[1] * block.expansion, planes[2], num_blocks[2], strides[2], dilations[2])
        self.layer4 = make_layer(block, planes[2] * block.expansion, planes[3], num_blocks[3], strides[3], dilations[3])
        self.out_channels: Tuple[int, ...] = tuple(p * block.expansion for p in planes)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self.maxpool(self.stem(x))
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return [c1, c2, c3, c4]
