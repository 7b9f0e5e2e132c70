"""PSPNet and its backbones (torch); :func:`create_model` is the one way to get a zoo model with its weights."""

from __future__ import annotations

from .backbones import BACKBONES, Backbone, get_backbone
from .factory import Weights, build_model, create_model
from .init import randomize_
from .pspnet import PSPNet, PyramidPoolingModule, upsample_logits
from .resnet import ResNet

__all__ = ["BACKBONES", "Backbone", "PSPNet", "PyramidPoolingModule", "ResNet", "Weights", "build_model",
           "create_model", "get_backbone", "randomize_", "upsample_logits"]
