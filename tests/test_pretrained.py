"""--pretrained: sssegmentation's ImageNet v1c backbones, downloaded like checkpoints, loaded strictly."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import torch

from pspnet_trt.models import BACKBONES, PSPNet
from pspnet_trt.train import TrainConfig
from pspnet_trt.train.pretrained import PretrainedError, load_backbone, resolve

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "camvid"
KEYS = Path(os.environ.get("PSPNET_TRT_REFERENCE", REPO.parent / "shared" / "reference")) / "keys"


def v1c_layout(depth: int = 18) -> List[Tuple[str, Tuple[int, ...]]]:
    """Keys and shapes of sssegmentation's ResNet(use_conv3x3_stem=True) state dict (ssseg/modules/models/
    backbones/resnet.py): stem = conv(3->32) bn relu conv(32->32) bn relu conv(32->64) bn relu, then
    layer1..4 of BasicBlock (18) or Bottleneck (50/101) with a downsample (conv, bn) on each layer's first
    block; plus the ImageNet classifier fc of the v1c files."""
    def bn(name: str, c: int) -> List[Tuple[str, Tuple[int, ...]]]:
        return [(f"{name}.weight", (c,)), (f"{name}.bias", (c,)), (f"{name}.running_mean", (c,)),
                (f"{name}.running_var", (c,)), (f"{name}.num_batches_tracked", ())]

    out: List[Tuple[str, Tuple[int, ...]]] = [("stem.0.weight", (32, 3, 3, 3)), *bn("stem.1", 32),
                                              ("stem.3.weight", (32, 32, 3, 3)), *bn("stem.4", 32),
                                              ("stem.6.weight", (64, 32, 3, 3)), *bn("stem.7", 64)]
    bottleneck = depth >= 50
    blocks = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]
    expansion = 4 if bottleneck else 1
    inplanes = 64
    for i, n in enumerate(blocks):
        planes = 64 * 2 ** i
        for j in range(n):
            p = f"layer{i + 1}.{j}"
            cin = inplanes if j == 0 else planes * expansion
            if bottleneck:
                out += [(f"{p}.conv1.weight", (planes, cin, 1, 1)), *bn(f"{p}.bn1", planes),
                        (f"{p}.conv2.weight", (planes, planes, 3, 3)), *bn(f"{p}.bn2", planes),
                        (f"{p}.conv3.weight", (planes * 4, planes, 1, 1)), *bn(f"{p}.bn3", planes * 4)]
            else:
                out += [(f"{p}.conv1.weight", (planes, cin, 3, 3)), *bn(f"{p}.bn1", planes),
                        (f"{p}.conv2.weight", (planes, planes, 3, 3)), *bn(f"{p}.bn2", planes)]
            if j == 0 and (i > 0 or inplanes != planes * expansion):
                out += [(f"{p}.downsample.0.weight", (planes * expansion, cin, 1, 1)),
                        *bn(f"{p}.downsample.1", planes * expansion)]
        inplanes = planes * expansion
    return out + [("fc.weight", (1000, inplanes)), ("fc.bias", (1000,))]


def v1c_file(path: Path, depth: int = 18, seed: int = 0, drop: Tuple[str, ...] = (),
             extra: Dict[str, torch.Tensor] | None = None) -> Path:
    g = torch.Generator().manual_seed(seed)
    state = {k: (torch.tensor(7, dtype=torch.int64) if k.endswith("num_batches_tracked")
                 else torch.randn(shape, generator=g)) for k, shape in v1c_layout(depth) if k not in drop}
    state.update(extra or {})
    torch.save({"state_dict": state}, path)  # OpenMMLab's files keep the weights under 'state_dict'
    return path


def test_v1c_layout_is_sssegmentations_backbone():
    """The hand-written layout above equals the reference key list taken from sssegmentation's own model."""
    ref = KEYS / "keys_r18_os8_camvid.json"
    if not ref.is_file():
        pytest.skip(f"reference key list {ref} not found (../shared/reference, or set $PSPNET_TRT_REFERENCE)")
    keys = json.loads(ref.read_text())["state_dict"]
    backbone = [(k[len("backbone_net."):], tuple(s)) for k, s, _ in keys if k.startswith("backbone_net.")]
    assert backbone == [(k, s) for k, s in v1c_layout(18) if not k.startswith("fc.")]




def small_pspnet() -> PSPNet:
    return PSPNet(num_classes=11, backbone="resnet18", output_stride=8, ppm_channels=16, aux_channels=16)


def test_url_downloaded_once_and_loaded_into_the_backbone(www, tmp_path, monkeypatch):
    url, root = www
    src = v1c_file(root / "resnet18_v1c-test.pth")
    monkeypatch.setenv("PSPNET_TRT_CACHE", str(tmp_path / "cache"))
    path = resolve(f"{url}/resnet18_v1c-test.pth", "resnet18", progress=False)
    assert path == tmp_path / "cache" / "pretrained" / "resnet18_v1c-test.pth" and path.read_bytes() == src.read_bytes()
    src.unlink()  # cached: no second download
    assert resolve(f"{url}/resnet18_v1c-test.pth", "resnet18", progress=False) == path
    model = small_pspnet()
    record = load_backbone(model.backbone_net, path, "URL")
    assert record.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    file_state = torch.load(path, weights_only=True)["state_dict"]
    got = model.backbone_net.state_dict()
    assert got.keys() == {k for k in file_state if not k.startswith("fc.")}
    assert all(torch.equal(got[k], file_state[k]) for k in got)


def test_auto_is_the_backbone_tables_url(www, tmp_path, monkeypatch):
    url, root = www
    v1c_file(root / "resnet18_v1c-b5776b93.pth")
    monkeypatch.setenv("PSPNET_TRT_CACHE", str(tmp_path / "cache"))
    assert BACKBONES["resnet50"].pretrained_url.endswith("/resnet50_v1c-2cccc1ad.pth")
    monkeypatch.setitem(BACKBONES, "resnet18", dataclasses.replace(
        BACKBONES["resnet18"], pretrained_url=f"{url}/resnet18_v1c-b5776b93.pth"))
    assert resolve("auto", "resnet18", progress=False).name == "resnet18_v1c-b5776b93.pth"
    assert resolve("none", "resnet18") is None
    with pytest.raises(PretrainedError, match="no ImageNet weights are published for resnet34"):
        resolve("auto", "resnet34")


def test_defaults_auto_for_published_none_for_the_cpu_model():
    for cpu_model in ("r18_os8_camvid", "mv2_os8_camvid"):
        assert TrainConfig(model=cpu_model, data=".", work_dir=".").resolved().pretrained == "none"
    from pspnet_trt.zoo import ZOO

    published = [name for name, spec in ZOO.items() if spec.config]
    assert len(published) == 15
    assert all(TrainConfig(model=name, data=".", work_dir=".").resolved().pretrained == "auto" for name in published)


def test_offline_names_none_and_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PSPNET_TRT_CACHE", str(tmp_path / "cache"))
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PretrainedError) as e:
        resolve(f"http://127.0.0.1:{port}/resnet18_v1c.pth", "resnet18", progress=False)
    assert "--pretrained none" in str(e.value) and "--pretrained PATH" in str(e.value)
    with pytest.raises(PretrainedError, match="no such file"):
        resolve(str(tmp_path / "missing.pth"), "resnet18")


def test_strict_every_difference_is_named(tmp_path):
    model = small_pspnet()
    f = v1c_file(tmp_path / "a.pth", drop=("layer2.0.conv1.weight",), extra={"head.weight": torch.zeros(3)})
    with pytest.raises(PretrainedError) as e:
        load_backbone(model.backbone_net, f, "PATH")
    assert "layer2.0.conv1.weight" in str(e.value) and "head.weight" in str(e.value)
    f = v1c_file(tmp_path / "b.pth", depth=50)
    with pytest.raises(PretrainedError, match="shapes differ"):
        load_backbone(model.backbone_net, f, "PATH")
    # the BatchNorm step counters alone may be absent; fc.* is the only leftover allowed
    counters = tuple(k for k, _ in v1c_layout(18) if k.endswith("num_batches_tracked"))
    load_backbone(model.backbone_net, v1c_file(tmp_path / "c.pth", drop=counters), "PATH")
    torch.save({"model": {"x": torch.zeros(1)}, "note": "code"}, tmp_path / "d.pth")
    with pytest.raises(PretrainedError):
        load_backbone(model.backbone_net, tmp_path / "d.pth", "PATH")


def test_cli_records_file_and_sha256(www, tmp_path):
    url, root = www
    v1c_file(root / "resnet18_v1c-test.pth")
    work = tmp_path / "work"
    env = {**os.environ, "PSPNET_TRT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "pspnet_trt", "train", "--model", "r18_os8_camvid", "--data", str(SAMPLE),
                        "--batch-size", "2", "--crop", "64x64", "--workers", "0", "--limit-images", "2", "--iters", "1",
                        "--eval-every", "0", "--eval-limit", "1", "--ppm-channels", "16", "--aux-channels", "16",
                        "--threads", "1", "--lr", "0", "--pretrained", f"{url}/resnet18_v1c-test.pth",
                        "--work-dir", str(work)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    cached = tmp_path / "cache" / "pretrained" / "resnet18_v1c-test.pth"
    sha = hashlib.sha256(cached.read_bytes()).hexdigest()
    summary = json.loads((work / "summary.json").read_text())
    assert summary["pretrained"]["file"] == str(cached) and summary["pretrained"]["sha256"] == sha
    assert sha in (work / "train.log").read_text()
    assert f"backbone initialisation: {cached}" in r.stdout
    # --lr 0 is honoured: the trained weights are still the file's
    ckpt = torch.load(work / "checkpoints-epoch-latest.pth", weights_only=True)
    file_state = torch.load(cached, weights_only=True)["state_dict"]
    assert torch.equal(ckpt["model"]["backbone_net.layer4.1.conv2.weight"], file_state["layer4.1.conv2.weight"])
    assert ckpt["pretrained"]["sha256"] == sha
