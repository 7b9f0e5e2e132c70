"""The deploy variant of a PSPNet for one static input size: what goes into the ONNX graph.

It shares the trained modules (no copy of the weights) and changes only what deployment needs:
exact fixed pools instead of adaptive ones, constant resize sizes, and the final bilinear upsample
to the input size plus an optional ArgMax, so an edge GPU copies HxW bytes instead of CxHxW floats.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..models import PSPNet
from ..zoo import Normalization
from .frame_resize import Cv2LinearResize
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


class Preprocess(nn.Module):
    """In-graph preprocessing of a raw-frame artifact (see ``pspnet_trt.deploy.INPUT_FORMATS``).

    ``bgr8``: uint8 NxFHxFWx3 BGR -> Cast -> ``cv2.resize(..., INTER_LINEAR)`` of the uint8 pixels to the network
    size, bit for bit, in the frame's NHWC layout, with the channel order folded into its weights (OpenCV's
    fixed-point arithmetic, :mod:`.frame_resize`; so the network input equals the host path's exactly) ->
    Transpose to NCHW at the network size -> ``(x - mean) / std`` (Sub, Div: no Add, so the INT8 pass puts no
    Q/DQ here).
    ``pixels``: float 0..255 Nx3xHxW in the model's channel order -> ``(x - mean) / std``.
    """

    def __init__(self, input_format: str, norm: Normalization, input_hw: Tuple[int, int],
                 frame_hw: Optional[Tuple[int, int]] = None) -> None:
        super().__init__()
        self.input_format = input_format
        self.input_hw = tuple(input_hw)
        self.frame_hw = tuple(frame_hw) if frame_hw is not None else None
        self.flip = norm.channel_order == "rgb"
        self.register_buffer("mean", torch.tensor(norm.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(norm.std, dtype=torch.float32).view(1, 3, 1, 1))
        self.resize = None
        if self.frame_hw is not None and self.frame_hw != self.input_hw:
            self.resize = Cv2LinearResize(self.frame_hw, self.input_hw, flip=self.flip)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.input_format == "pixels":
            return self.normalize(images)
        x = images.to(torch.float32)  # N x FH x FW x 3: resized in the frame's layout, channels folded in
        if self.resize is not None:
            x = self.resize(x)  # the channel order too
        elif self.flip:
            x = x.flip(-1)
        return self.normalize(x.permute(0, 3, 1, 2))


class NearestLabels(nn.Module):
    """Int64 label map Nx1xHxW -> NxFHxFW at the frame size, nearest neighbour (floor of x * in/out, as
    ``cv2.INTER_NEAREST``); Resize runs on a float copy (TensorRT resizes no integers) kept FP32 in FP16 graphs."""

    def __init__(self, frame_hw: Tuple[int, int], dtype: torch.dtype) -> None:
        super().__init__()
        self.frame_hw, self.dtype = tuple(frame_hw), dtype

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(labels.to(torch.float32), size=self.frame_hw, mode="nearest")
        return x.reshape(-1, *self.frame_hw).to(self.dtype)  # not squeeze(1): with a dynamic batch that is an If


class DeployPSPNet(nn.Module):
    """The network input (normalised NCHW float at a static size, or a raw-frame format with
    :class:`Preprocess` in front) -> ``{"logits": NxCxHxW, "labels": NxHxW}`` (as asked).

    With ``frame_hw`` (bgr8) the prediction is brought to the frame size: ``frame_upsample="logits"``
    upsamples the class scores bilinearly straight from the head's output (as sssegmentation's test does)
    and takes the ArgMax there; ``"labels"`` takes the ArgMax at the network size and upsamples the label
    map nearest-neighbour (Resize on a float copy: TensorRT resizes no uint8)."""

    def __init__(self, model: PSPNet, input_hw: Tuple[int, int], output: str = "labels",
                 labels_dtype: torch.dtype = torch.uint8, input_format: str = "normalized",
                 norm: Optional[Normalization] = None, frame_hw: Optional[Tuple[int, int]] = None,
                 frame_upsample: str = "logits") -> None:
        super().__init__()
        model = model.eval()
        self.input_hw = tuple(input_hw)
        self.output = output
        self.labels_dtype = labels_dtype
        self.frame_hw = tuple(frame_hw) if frame_hw is not None else None
        self.frame_upsample = frame_upsample
        self.preprocess = None
        self.label_upsample = NearestLabels(self.frame_hw, labels_dtype) if self.frame_hw is not None else None
        if input_format != "normalized":
            self.preprocess = Preprocess(input_format, norm or Normalization(), self.input_hw, self.frame_hw)
        self.backbone_net = model.backbone_net
        self.ppm_net = DeployPPM(model.ppm_net, feature_size(model, self.input_hw))
        self.decoder = model.decoder

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        if self.preprocess is not None:
            images = self.preprocess(images)
        features = self.backbone_net(images)[-1]
        logits = self.decoder(self.ppm_net(features))
        if self.frame_hw is not None:
            if self.frame_upsample == "logits":
                logits = F.interpolate(logits, size=self.frame_hw, mode="bilinear", align_corners=False)
                return {"labels": logits.argmax(1).to(self.labels_dtype)}
            assert self.label_upsample is not None
            logits = F.interpolate(logits, size=self.input_hw, mode="bilinear", align_corners=False)
            return {"labels": self.label_upsample(logits.argmax(1, keepdim=True))}
        logits = F.interpolate(logits, size=self.input_hw, mode="bilinear", align_corners=False)
        if self.preprocess is not None and self.preprocess.input_format == "pixels":
            # DeepStream's segmentation parser ignores scores <= -1 (serving/deepstream.py): probabilities instead
            logits = torch.softmax(logits, dim=1)
        out = {}
        if self.output in ("logits", "both"):
            out["logits"] = logits
        if self.output in ("labels", "both"):
            out["labels"] = logits.argmax(1).to(self.labels_dtype)
        return out
