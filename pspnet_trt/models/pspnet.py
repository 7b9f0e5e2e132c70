"""PSPNet as sssegmentation builds it: a backbone of the table (deep-stem dilated ResNets), pyramid pooling,
auxiliary FCN head.

Module names match sssegmentation's state dict exactly (``backbone_net``, ``ppm_net.branches.N``,
``ppm_net.bottleneck``, ``decoder``, ``auxiliary_decoder``), so its checkpoints load with
``strict=True``. The model knows nothing of deployment: ``export/`` swaps the adaptive pools for
exact fixed ones.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import get_backbone


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int) -> List[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]


class PyramidPoolingModule(nn.Module):
    """Adaptive average pools at ``pool_scales``, 1x1 conv each, bilinear back, concat, 3x3 fuse conv."""

    def __init__(self, in_channels: int, out_channels: int, pool_scales: Sequence[int] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.pool_scales = tuple(pool_scales)
        self.branches = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(scale), *conv_bn_relu(in_channels, out_channels, 1))
            for scale in self.pool_scales
        )
        self.bottleneck = nn.Sequential(*conv_bn_relu(in_channels + out_channels * len(self.pool_scales), out_channels, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        levels = [x]
        for branch in self.branches:
            levels.append(F.interpolate(branch(x), size=size, mode="bilinear", align_corners=False))
        return self.bottleneck(torch.cat(levels, dim=1))


class PSPNet(nn.Module):
    """``forward(images)`` returns logits at 1/output_stride (ceil); in training mode also the aux logits."""

    weights: Any = None  # where the weights came from: set by create_model (a models.factory.Weights)

    def __init__(self, num_classes: int, backbone: str = "resnet50", output_stride: int = 8, ppm_channels: int = 512,
                 aux_channels: int = 512, dropout: float = 0.1, pool_scales: Sequence[int] = (1, 2, 3, 6), *,
                 depth: Optional[int] = None) -> None:
        """``backbone``: a name in :data:`~.backbones.BACKBONES`; ``depth=N`` is short for ``backbone="resnetN"``."""
        super().__init__()
        if depth is not None:
            backbone = f"resnet{depth}"
        entry = get_backbone(backbone)
        self.num_classes = num_classes
        self.output_stride = output_stride
        self.backbone_net = entry.build(output_stride=output_stride)
        c3, c4 = entry.channels
        self.ppm_net = PyramidPoolingModule(c4, ppm_channels, pool_scales)
        self.decoder = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(ppm_channels, num_classes, 1))
        # Used only in training, but part of every sssegmentation checkpoint.
        self.auxiliary_decoder = nn.Sequential(
            *conv_bn_relu(c3, aux_channels, 3), nn.Dropout2d(dropout), nn.Conv2d(aux_channels, num_classes, 1)
        )

    def forward(self, images: torch.Tensor) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        _, _, c3, c4 = self.backbone_net(images)
        logits = self.decoder(self.ppm_net(c4))
        if self.training:
            return logits, self.auxiliary_decoder(c3)
        return logits


def upsample_logits(logits: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """sssegmentation's test-time resize: bilinear, align_corners=False, straight to ``size`` (H, W)."""
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
