from __future__ import annotations

import math

import pytest
import torch

from pspnet_trt.models import PSPNet, build_model, randomize_, upsample_logits
from pspnet_trt.models.resnet import BasicBlock, Bottleneck


@pytest.mark.parametrize("os_,h,w", [(8, 64, 128), (8, 97, 131), (16, 97, 131)])
def test_logits_at_ceil_of_output_stride(os_, h, w):
    model = PSPNet(num_classes=5, depth=18, output_stride=os_, ppm_channels=8, aux_channels=8).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, h, w))
    assert out.shape == (1, 5, math.ceil(h / os_), math.ceil(w / os_))
    assert upsample_logits(out, (h, w)).shape == (1, 5, h, w)


def test_training_mode_returns_aux_logits_from_layer3():
    model = PSPNet(num_classes=4, depth=18, ppm_channels=8, aux_channels=8).train()
    logits, aux = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == aux.shape == (2, 4, 8, 8)


def test_contract_dilation_os8_r50():
    model = build_model("r50_os8_voc")
    layer3 = [b.conv2.dilation[0] for b in model.backbone_net.layer3]
    layer4 = [b.conv2.dilation[0] for b in model.backbone_net.layer4]
    assert layer3 == [1] + [2] * 5 and layer4 == [2, 4, 4]
    assert all(b.conv2.padding[0] == b.conv2.dilation[0] for b in model.backbone_net.layer4)
    assert isinstance(model.backbone_net.layer1[0], Bottleneck)
    os16 = build_model("r50_os16_voc")
    assert [b.conv2.dilation[0] for b in os16.backbone_net.layer4] == [1, 2, 2]
    assert os16.backbone_net.layer3[0].conv2.stride == (2, 2)


def test_r18_basic_block_dilates_only_first_conv():
    model = build_model("r18_os8_camvid")
    block = model.backbone_net.layer4[1]
    assert isinstance(block, BasicBlock)
    assert block.conv1.dilation == (4, 4) and block.conv2.dilation == (1, 1)
    assert model.backbone_net.layer4[0].conv1.dilation == (2, 2)


def test_build_model_num_classes_override_and_eval_mode():
    model = build_model("r50_os8_cityscapes", num_classes=7)
    assert not model.training
    assert model.decoder[1].out_channels == 7 and model.auxiliary_decoder[4].out_channels == 7


def test_randomize_changes_bn_statistics_deterministically():
    a = randomize_(PSPNet(3, depth=18, ppm_channels=8, aux_channels=8), 1)
    b = randomize_(PSPNet(3, depth=18, ppm_channels=8, aux_channels=8), 1)
    bn = a.backbone_net.stem[1]
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
