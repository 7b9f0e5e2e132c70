"""The backbone table: one named entry per backbone a zoo entry may use (``ModelSpec.backbone``).

An entry is what :class:`~pspnet_trt.models.pspnet.PSPNet` needs and nothing else: a constructor taking
``output_stride`` that returns a module whose ``forward`` gives the four stage outputs ``[c1, c2, c3, c4]``
(PSPNet reads c3 for its auxiliary head and c4 for the pyramid pooling); the channels of (c3, c4); and the
URL of its ImageNet weights (``train --pretrained auto``), if any are published. A new backbone is one class
(its module names are the state-dict keys its checkpoints carry) and one entry here.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

from torch import nn

from ..errors import UserError
from .mobilenet import MobileNetV2
from .resnet import ResNet

# sssegmentation's DEFAULT_MODEL_URLS['resnet{depth}conv3x3stem'] (ssseg/modules/models/backbones/resnet.py): the
# OpenMMLab "v1c" deep-stem ResNets every sssegmentation PSPNet config starts from.
OPENMMLAB_PRETRAIN = "https://download.openmmlab.com/pretrain/third_party"
# DEFAULT_MODEL_URLS['mobilenetv2'] (ssseg/modules/models/backbones/mobilenet.py): mmclassification's ImageNet model.
OPENMMLAB_MOBILENETV2 = ("https://download.openmmlab.com/mmclassification/v0/mobilenet_v2/"
                         "mobilenet_v2_batch256_imagenet_20200708-3b2dc3af.pth")


@dataclass(frozen=True)
class Backbone:
    """``build(output_stride=...)`` -> module returning [c1, c2, c3, c4]; ``channels`` = (c3, c4) channels.

    ``pretrained_url``: its ImageNet weights (``train --pretrained auto``); the file's keys are the backbone's own
    names, bare or under ``backbone.``/``backbone_net.``. ``pretrained_extra``: the key prefixes (after that
    prefix) the file may hold beyond the backbone, the ImageNet classifier, which loading leaves out; any other
    stray key is an error."""

    build: Callable[..., nn.Module]
    channels: Tuple[int, int]
    pretrained_url: Optional[str] = None
    pretrained_extra: Tuple[str, ...] = ("fc.",)


BACKBONES: Dict[str, Backbone] = {
    "resnet18": Backbone(functools.partial(ResNet, 18), (256, 512), f"{OPENMMLAB_PRETRAIN}/resnet18_v1c-b5776b93.pth"),
    "resnet34": Backbone(functools.partial(ResNet, 34), (256, 512)),
    "resnet50": Backbone(functools.partial(ResNet, 50), (1024, 2048),
                         f"{OPENMMLAB_PRETRAIN}/resnet50_v1c-2cccc1ad.pth"),
    "resnet101": Backbone(functools.partial(ResNet, 101), (1024, 2048),
                          f"{OPENMMLAB_PRETRAIN}/resnet101_v1c-e67eebb6.pth"),
    # mmcls' file also holds its last 1x1 conv to 1280 channels (conv2), which sssegmentation's backbone has not
    "mobilenetv2": Backbone(MobileNetV2, (96, 320), OPENMMLAB_MOBILENETV2, pretrained_extra=("conv2.", "head.")),
}


def get_backbone(name: str) -> Backbone:
    """The table entry ``name``; a one-line error naming the closest entries otherwise."""
    try:
        return BACKBONES[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(BACKBONES), n=2)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise UserError(f"unknown backbone {name!r}.{hint} Known: {', '.join(BACKBONES)} "
                        "(pspnet_trt/models/backbones.py)") from None
