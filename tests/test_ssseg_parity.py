"""Our PSPNet computes what sssegmentation's own PSPNet computes.

How the reference (tests/data/ssseg_reference.npz + .json sidecar) was produced: sssegmentation's own
code at commit eb1878c112402e86a92ee6958778272065bf59b9 (v1.7.0), torch 2.13.0+cpu, numpy 2.4.6, CPU.
Each segmentor was built with sssegmentation's config code (``ConfigParser`` on
``ssseg/configs/pspnet/pspnet_resnet{50,101}os{8,16}_cityscapes.py``, 19 classes; for the R-18 CamVid
demo layout the ``_base_`` ``PSPNET_SEGMENTOR_CFG`` with backbone resnet18conv3x3stem os8, head in 512 /
feats 128, auxiliary in 256 / out 64, 11 classes), ``norm_cfg={'type': 'BatchNorm2d'}`` instead of
SyncBatchNorm, backbone ``pretrained=False``, ``BuildSegmentor(cfg, mode='TEST').eval()``. Its state dict
was filled with ``ssseg_weights.make_weights`` (random BatchNorm; seed in the JSON) by
``load_state_dict(strict=True)``. Inputs: seeded uint8 BGR images (1x3x64x97, odd width on purpose; and
1x3x75x100 for R-50 os16, whose 5x7 feature map is smaller than the 6x6 pyramid bin) turned into model
inputs by sssegmentation's own ``Normalize`` transform (cityscapes test pipeline). Stored per config:
the raw ``seg_logits`` of ``segmentor(SSSegInputStructure(mode='TEST'))`` (1/8 or 1/16, float32) and the
labels of its test.py path (``auginference``, then ``F.interpolate`` bilinear, align_corners=False, to
the input size, argmax). ``@var1`` is R-101 os8 with conv weights N(0, 1/fan_in): with the default
N(0, 2/fan_in) the deep activations reach ~1e7 and BN shifts in layer4 or the PPM change the logits by
< 1e-6 of their range. torchvision and the other packages the segmentor registry imports were stub
modules; the generator checked that PSPNet never called them. The generator ran sssegmentation's code,
so neither is part of this repository (workplace rule). On that machine our logits were bit-identical.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ssseg_weights import state_dict_for

from pspnet_trt.checkpoints import load_checkpoint
from pspnet_trt.models import PSPNet, build_model, upsample_logits
from pspnet_trt.preprocess import normalize
from pspnet_trt.zoo import get_spec

DATA = Path(__file__).parent / "data"
REF = np.load(DATA / "ssseg_reference.npz")
META = json.loads((DATA / "ssseg_reference.json").read_text())
CONFIGS: Dict[str, dict] = META["configs"]
REL_TOL = 1e-4  # max |ours - ssseg| <= REL_TOL * logit range


class Models:
    """Each zoo model built once per module; the weights are reloaded when another conv_var is asked for."""

    def __init__(self) -> None:
        self.models: Dict[str, Tuple[PSPNet, Optional[float]]] = {}

    def get(self, name: str, conv_var: float = 2.0) -> PSPNet:
        model, loaded = self.models.get(name, (None, None))
        if model is None:
            model = build_model(name)
        if loaded != conv_var:
            model.load_state_dict(state_dict_for(model, META["weight_seed"], conv_var), strict=True)
        self.models[name] = (model.eval(), conv_var)
        return model

    def dirty(self, name: str) -> None:
        """The weights of ``name`` were changed in place: reload them on the next ``get``."""
        if name in self.models:
            self.models[name] = (self.models[name][0], None)


@pytest.fixture(scope="module")
def models() -> Iterator[Models]:
    cache = Models()
    yield cache
    cache.models.clear()


def run(model: PSPNet, x: np.ndarray) -> torch.Tensor:
    # oneDNN spends ~4 s building R-101's conv primitives on a first forward; the plain CPU convs take
    # 0.1 s and differ from it by float rounding only (the reference was made with oneDNN)
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(x)))
    finally:
        torch.backends.mkldnn.enabled = enabled


def ref_logits(key: str) -> torch.Tensor:
    return torch.from_numpy(REF[f"{key}/logits"])


def ref_labels(key: str) -> torch.Tensor:
    return torch.from_numpy(REF[f"{key}/labels"].astype(np.int64))[None]


def span(t: torch.Tensor) -> float:
    return float(t.max() - t.min())


def assert_same_argmax(ours: torch.Tensor, ref: torch.Tensor, max_diff: float, what: str) -> None:
    """Identical argmax over classes (dim 1) at every pixel whose reference top-2 margin exceeds
    2 * max_diff, i.e. wherever the measured logit difference cannot flip it (every pixel when equal)."""
    top2 = ref.topk(2, dim=1).values
    decided = (top2[:, 0] - top2[:, 1]) > 2 * max_diff
    same = ours.argmax(1) == ref.argmax(1)
    share = float(decided.float().mean())
    assert share > 0.99, f"{what}: too many near-ties ({share:.4f} of the pixels decided)"
    assert bool(same[decided].all()), f"{what}: argmax differs at {int((~same & decided).sum())} pixels"


@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_logits_equal_sssegmentation(models: Models, key: str) -> None:
    info = CONFIGS[key]
    x = REF[info["input"]]
    ours = run(models.get(key.split("@")[0], info["conv_var"]), x)
    ref = ref_logits(key)
    assert tuple(ours.shape) == tuple(ref.shape) == tuple(info["logits_shape"])
    diff = float((ours - ref).abs().max())
    assert diff <= REL_TOL * span(ref), f"max|diff| = {diff / span(ref):.3g} of the logit range"
    assert_same_argmax(ours, ref, diff, "logits")
    # sssegmentation's test-time path: bilinear (align_corners=False) straight to the input size, argmax
    size = x.shape[-2:]
    ref_up = F.interpolate(ref, size=size, mode="bilinear", align_corners=False)
    assert bool((ref_up.argmax(1) == ref_labels(key)).all())  # the stored labels belong to the stored logits
    assert_same_argmax(upsample_logits(ours, size), ref_up, diff, "upsampled labels")


@pytest.mark.parametrize("suffix", ["", "_75x100"])
def test_preprocessing_equals_sssegmentation_normalize(suffix: str) -> None:
    """Our normalize() of the BGR image gives the input sssegmentation's Normalize(to_rgb=True) made."""
    image, expected = REF[f"image_bgr{suffix}"], REF[f"input{suffix}"]
    norm = get_spec("r50_os8_cityscapes").normalization
    np.testing.assert_allclose(normalize(image, norm)[None], expected, rtol=0, atol=1e-5)
    assert np.abs(normalize(image[..., ::-1], norm)[None] - expected).max() > 0.5  # channel order matters


def test_the_comparison_discriminates(models: Models) -> None:
    """Mistakes a checkpoint cannot reveal fail the parity check above by orders of magnitude."""
    key = "r50_os8_cityscapes"
    x, ref, labels = REF["input"], ref_logits(key), ref_labels(key)

    bgr = run(models.get(key), x[:, ::-1])  # BGR instead of RGB input
    assert float((bgr - ref).abs().max()) > 100 * REL_TOL * span(ref)
    assert float((upsample_logits(bgr, x.shape[-2:]).argmax(1) != labels).float().mean()) > 0.01

    # output stride 16 with the very same weights (os8 and os16 have identical keys and shapes)
    os16 = run(models.get("r50_os16_cityscapes"), x)
    assert tuple(os16.shape) != tuple(ref.shape)
    os16_at_8 = F.interpolate(os16, size=ref.shape[-2:], mode="bilinear", align_corners=False)
    assert float((os16_at_8 - ref).abs().max()) > 100 * REL_TOL * span(ref)
    assert float((upsample_logits(os16, x.shape[-2:]).argmax(1) != labels).float().mean()) > 0.05

    # a deep additive mistake (layer4 BN running_mean ignored) shows at a trained model's scale (@var1)
    deep = "r101_os8_cityscapes@var1"
    model = models.get("r101_os8_cityscapes", CONFIGS[deep]["conv_var"])
    try:
        for bn in model.backbone_net.layer4.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                bn.running_mean.zero_()
        wrong, ref_deep = run(model, REF[CONFIGS[deep]["input"]]), ref_logits(deep)
        assert float((wrong - ref_deep).abs().max()) > 10 * REL_TOL * span(ref_deep)
    finally:
        models.dirty("r101_os8_cityscapes")


def test_sssegmentation_checkpoint_file_gives_the_reference(tmp_path: Path) -> None:
    """A file shaped like the one ssseg's train.py + saveckpts wrote (recorded in the JSON) loads strictly."""
    recorded = META["ssseg_checkpoint"]
    model = build_model("r18_os8_camvid")
    state = OrderedDict(state_dict_for(model, META["weight_seed"], CONFIGS["r18_os8_camvid"]["conv_var"]))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # creates the momentum buffers ssseg's file holds
    ckpt = {"cur_epoch": 1, "cur_iter": 1, "optimizer": optimizer.state_dict(), "model": state}
    assert list(ckpt) == recorded["top_level_keys_in_order"]
    recorded_group = recorded["structure"]["optimizer"]["param_groups"][0]
    assert sorted(ckpt["optimizer"]["param_groups"][0]) == sorted(recorded_group)
    assert len(ckpt["optimizer"]["state"]) == len(ckpt["optimizer"]["param_groups"][0]["params"])
    path = tmp_path / "checkpoints-epoch-1.pth"
    torch.save(ckpt, path)

    ours = run(load_checkpoint(build_model("r18_os8_camvid"), path), REF["input"])
    ref = ref_logits("r18_os8_camvid")
    diff = float((ours - ref).abs().max())
    assert diff <= REL_TOL * span(ref)
    assert_same_argmax(ours, ref, diff, "logits")
