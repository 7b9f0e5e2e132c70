"""Our PSPNet computes what sssegmentation's own PSPNet computes.

tests/data/ssseg_reference.npz holds logits of sssegmentation's model (commit eb1878c1, built with
its own config code in TEST mode, BatchNorm2d instead of SyncBatchNorm, torch 2.13.0 CPU) for R-18
(CamVid demo layout), R-50 os8/os16 and R-101 os8, on a seeded 1x3x64x97 input (odd width on purpose),
with the deterministic random weights of tests/ssseg_weights.py (random BatchNorm included). The
generator script ran sssegmentation's code and is not part of this repository.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ssseg_weights import make_weights

from pspnet_trt.checkpoints import load_checkpoint
from pspnet_trt.models import PSPNet, build_model

DATA = Path(__file__).parent / "data"
REF = np.load(DATA / "ssseg_reference.npz")
CONFIGS = json.loads((DATA / "ssseg_reference.json").read_text())["configs"]


def ours(name: str) -> PSPNet:
    model = build_model(name)
    weights = make_weights([(k, tuple(v.shape)) for k, v in model.state_dict().items()], seed=1)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
    return model.eval()


def run(model: PSPNet, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("name", CONFIGS)
def test_logits_equal_sssegmentation(name):
    ref = REF[name]
    out = run(ours(name), REF["input"])
    assert out.shape == ref.shape
    span = ref.max() - ref.min()
    assert np.abs(out - ref).max() <= 1e-4 * span, np.abs(out - ref).max() / span
    assert (out.argmax(1) == ref.argmax(1)).all()


def test_the_comparison_discriminates():
    ref = REF["r50_os8_cityscapes"]
    x = REF["input"]
    wrong_order = run(ours("r50_os8_cityscapes"), x[:, ::-1].copy())  # BGR instead of RGB
    assert (wrong_order.argmax(1) != ref.argmax(1)).mean() > 0.05
    os16 = ours("r50_os16_cityscapes")  # same keys and shapes, other dilation: a checkpoint cannot tell
    out = torch.nn.functional.interpolate(torch.from_numpy(run(os16, x)), size=ref.shape[-2:], mode="bilinear",
                                          align_corners=False).numpy()
    assert np.abs(out - ref).max() > 0.1 * (ref.max() - ref.min())


def test_checkpoint_file_in_sssegmentation_format_gives_the_reference(tmp_path):
    model = build_model("r18_os8_camvid")
    weights = make_weights([(k, tuple(v.shape)) for k, v in model.state_dict().items()], seed=1)
    state = {k: torch.from_numpy(v) for k, v in weights.items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    path = tmp_path / "checkpoints-epoch-1.pth"
    torch.save({"cur_epoch": 1, "cur_iter": 10, "optimizer": optimizer.state_dict(), "model": state}, path)
    out = run(load_checkpoint(build_model("r18_os8_camvid"), path), REF["input"])
    np.testing.assert_allclose(out, REF["r18_os8_camvid"], atol=1e-4 * np.ptp(REF["r18_os8_camvid"]))
