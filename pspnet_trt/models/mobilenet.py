"""MobileNetV2 with dilation, as sssegmentation builds it (``MobileNetV2(structure_type='mobilenetv2')``,
``ssseg/modules/models/backbones/mobilenet.py``): ReLU6, seven inverted-residual stages, output stride 8 by
strides and dilations over the stages.

Attribute names (``conv1.conv``, ``layerN.i.conv.k.conv``/``.bn``) are the state-dict names of sssegmentation's
checkpoints (and, under ``backbone.``, of the OpenMMLab ImageNet file); do not rename them.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
from torch import nn

# output stride -> (strides, dilations) of layer1..layer7 (sssegmentation's outstride_to_strides_and_dilations)
STRIDES_DILATIONS = {
    8: ((1, 2, 2, 1, 1, 1, 1), (1, 1, 1, 2, 2, 4, 4)),
    16: ((1, 2, 2, 2, 1, 1, 1), (1, 1, 1, 1, 1, 2, 2)),
    32: ((1, 2, 2, 2, 1, 2, 1), (1, 1, 1, 1, 1, 1, 1)),
}
# (expand ratio, output channels, blocks) of layer1..layer7
ARCH = ((1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1))
OUT_INDICES = (1, 2, 4, 6)  # layer2, layer3, layer5, layer7: 24, 32, 96, 320 channels


def conv_bn_act(in_ch: int, out_ch: int, kernel: int, stride: int = 1, dilation: int = 1, groups: int = 1,
                act: bool = True) -> nn.Sequential:
    """``conv`` (no bias), ``bn``, ``activation`` (ReLU6) under sssegmentation's names."""
    layer = nn.Sequential()
    padding = dilation if kernel == 3 else 0
    layer.add_module("conv", nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, dilation=dilation,
                                       groups=groups, bias=False))
    layer.add_module("bn", nn.BatchNorm2d(out_ch))
    if act:
        layer.add_module("activation", nn.ReLU6(inplace=True))
    return layer


class InvertedResidual(nn.Module):
    """1x1 expand (absent at ratio 1) -> 3x3 depthwise (stride, dilation) -> 1x1 project (no activation);
    the input is added back when the shape allows (stride 1, same channels)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int, dilation: int = 1) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and in_channels == out_channels
        hidden = int(round(in_channels * expand_ratio))
        layers: List[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_act(in_channels, hidden, 1))
        layers.append(conv_bn_act(hidden, hidden, 3, stride=stride, dilation=dilation, groups=hidden))
        layers.append(conv_bn_act(hidden, out_channels, 1, act=False))
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1) returning the outputs of layer2, layer3, layer5 and layer7 (24/32/96/320 channels)."""

    def __init__(self, output_stride: int = 8, in_channels: int = 3) -> None:
        super().__init__()
        if output_stride not in STRIDES_DILATIONS:
            raise ValueError(f"output stride must be one of {sorted(STRIDES_DILATIONS)}, got {output_stride}")
        strides, dilations = STRIDES_DILATIONS[output_stride]
        self.conv1 = conv_bn_act(in_channels, 32, 3, stride=2)
        channels = 32
        self.layers: List[str] = []
        for i, ((ratio, out, blocks), stride, dilation) in enumerate(zip(ARCH, strides, dilations)):
            # only the first block of a stage is strided and dilated (sssegmentation's makelayer)
            stage = [InvertedResidual(channels, out, stride, ratio, dilation)]
            stage += [InvertedResidual(out, out, 1, ratio, 1) for _ in range(1, blocks)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            self.layers.append(f"layer{i + 1}")
            channels = out
        self.out_channels: Tuple[int, ...] = tuple(ARCH[i][1] for i in OUT_INDICES)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self.conv1(x)
        outs = []
        for i, name in enumerate(self.layers):
            x = getattr(self, name)(x)
            if i in OUT_INDICES:
                outs.append(x)
        return outs
