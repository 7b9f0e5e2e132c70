"""The deploy variant of a PSPNet for one static input size: what goes into the ONNX graph.

It shares the trained modules (no copy of the weights) and changes only what deployment needs:
exact fixed pools instead of adaptive ones, constant resize sizes, and the final bilinear upsample
to the input size plus an optional ArgMax, so an edge GPU copies HxW bytes instead of CxHxW floats.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..models import PSPNet
from .pools import FixedAdaptiveAvgPool2d


def feature_size(model: PSPNet, input_hw: Tuple[int, int]) -> Tuple[int, int]:
    """(H, W) of the layer4 features (the PPM input) for a static input size, measured by a forward pass."""
    was_training = model.training
    model.eval()  # never touch BatchNorm running statistics
    try:
        with torch.no_grad():
            c4 = model.backbone_net(torch.zeros(1, 3, *input_hw))[-1]
    finally:
        model.train(was_training)
    return int(c4.shape[-2]), int(c4.shape[-1])


class DeployPPM(nn.Module):
    """The pyramid pooling module of ``ppm`` with fixed pools and constant upsample sizes."""

    def __init__(self, ppm: nn.Module, feature_hw: Tuple[int, int]) -> None:
        super().__init__()
        self.feature_hw = tuple(feature_hw)
        self.pools = nn.ModuleList(FixedAdaptiveAvgPool2d(scale, self.feature_hw) for scale in ppm.pool_scales)
        # branch[0] is the adaptive pool; keep conv-bn-relu, shared with the trained model
        self.convs = nn.ModuleList(nn.Sequential(*list(branch)[1:]) for branch in ppm.branches)
        self.bottleneck = ppm.bottleneck

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = [x]
        for pool, conv in zip(self.pools, self.convs):
            levels.append(F.interpolate(conv(pool(x)), size=self.feature_hw, mode="bilinear", align_corners=False))
        return self.bottleneck(torch.cat(levels, dim=1))


class DeployPSPNet(nn.Module):
    """Normalised NCHW float input at a static size -> ``{"logits": NxCxHxW, "labels": NxHxW}`` (as asked)."""

    def __init__(self, model: PSPNet, input_hw: Tuple[int, int], output: str = "labels",
                 labels_dtype: torch.dtype = torch.uint8) -> None:
        super().__init__()
        model = model.eval()
        self.input_hw = tuple(input_hw)
        self.output = output
        self.labels_dtype = labels_dtype
        self.backbone_net = model.backbone_net
        self.ppm_net = DeployPPM(model.ppm_net, feature_size(model, self.input_hw))
        self.decoder = model.decoder

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        features = self.backbone_net(images)[-1]
        logits = self.decoder(self.ppm_net(features))
        logits = F.interpolate(logits, size=self.input_hw, mode="bilinear", align_corners=False)
        out = {}
        if self.output in ("logits", "both"):
            out["logits"] = logits
        if self.output in ("labels", "both"):
            out["labels"] = logits.argmax(1).to(self.labels_dtype)
        return out
