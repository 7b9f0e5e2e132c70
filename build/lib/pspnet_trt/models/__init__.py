"""PSPNet and its ResNet backbone (torch)."""

from __future__ import annotations

from typing import Optional

from .init import randomize_
from .pspnet import PSPNet, PyramidPoolingModule, upsample_logits
from .resnet import ResNet

__all__ = ["PSPNet", "PyramidPoolingModule", "ResNet", "build_model", "randomize_", "upsample_logits"]


def build_model(name: str, num_classes: Optional[int] = None) -> PSPNet:
    """The eval-mode PSPNet of zoo entry ``name`` (random weights; see ``load_checkpoint``).

    ``num_classes`` overrides the zoo's class count, e.g. to fine-tune on another dataset.
    """
    from ..zoo import get_spec

    spec = get_spec(name)
    model = PSPNet(
        num_classes=num_classes or spec.num_classes,
        depth=spec.depth,
        output_stride=spec.output_stride,
        ppm_channels=spec.ppm_channels,
        aux_channels=spec.aux_channels,
        dropout=spec.dropout,
        pool_scales=spec.pool_scales,
    )
    return model.eval()
