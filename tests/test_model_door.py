"""The model door (models.create_model) and its weights policy: an explicit checkpoint, else the shipped one,
else the published one (downloaded; offline: one line, exit 2, nothing written); random weights only when asked,
and then marked (checkpoint_sha256 None). Downloads go to a local HTTP server or a closed port, never the internet."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from pspnet_trt import checkpoints as ck
from pspnet_trt.errors import UserError
from pspnet_trt.models import BACKBONES, Backbone, PSPNet, build_model, create_model, randomize_
from pspnet_trt.zoo import ZOO, get_spec

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "samples" / "r18_os8_camvid_camvid.pth"
CLI = [sys.executable, "-m", "pspnet_trt"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def closed_port() -> int:
    with socket.socket() as s:  # a port nothing listens on: "offline"
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]




def metadata(onnx_path: Path) -> dict:
    import onnx

    from pspnet_trt.deploy import METADATA_KEY

    return json.loads({p.key: p.value for p in onnx.load(onnx_path).metadata_props}[METADATA_KEY])


# ---------------------------------------------------------------------------------------------------------------
# The backbone table
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_table_channels_are_what_the_backbone_outputs(name):
    entry = BACKBONES[name]
    with torch.device("meta"):
        outputs = entry.build(output_stride=8)(torch.zeros(1, 3, 64, 64))
    assert (outputs[2].shape[1], outputs[3].shape[1]) == entry.channels


def test_every_zoo_backbone_is_in_the_table_and_unknown_names_are_one_line():
    assert {spec.backbone for spec in ZOO.values()} <= set(BACKBONES)
    with pytest.raises(UserError, match=r"unknown backbone 'resnet5'\. Did you mean resnet50"):
        PSPNet(3, backbone="resnet5")


class TinyBackbone(nn.Module):
    """A stand-in for a new backbone: four stages, strides 4/8/8/8."""

    def __init__(self, output_stride: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, stride=4, padding=1)
        self.stages = nn.ModuleList([nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.Conv2d(6, 8, 1), nn.Conv2d(8, 10, 1)])

    def forward(self, x):
        outs = [self.stem(x)]
        for stage in self.stages:
            outs.append(stage(outs[-1]))
        return outs


def test_a_new_backbone_is_one_table_entry_and_one_class(monkeypatch, tmp_path):
    import dataclasses

    from pspnet_trt.deploy import DeployInfo
    from pspnet_trt.export import check_export, export_onnx

    monkeypatch.setitem(BACKBONES, "tiny", Backbone(TinyBackbone, (8, 10)))
    spec = dataclasses.replace(get_spec("r18_os8_camvid"), name="tiny_camvid", backbone="tiny", ppm_channels=4,
                               aux_channels=4, shipped_checkpoint=None)
    monkeypatch.setitem(ZOO, "tiny_camvid", spec)
    model = create_model("tiny_camvid", random_weights=True, seed=1)
    assert isinstance(model.backbone_net, TinyBackbone) and model.weights.random
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 11, 8, 8)
    path = export_onnx(model, DeployInfo.from_spec(spec, input_size=(64, 64), output="both"), tmp_path / "t.onnx")
    assert check_export(model, path, num_random=1).argmax_agreement >= 0.99999  # export needs nothing more
    with pytest.raises(UserError, match="tiny_camvid has no published checkpoint.*--random-weights"):
        create_model("tiny_camvid")  # no checkpoint anywhere: refused, never silently random


# ---------------------------------------------------------------------------------------------------------------
# Which weights: explicit > shipped > published; random only when asked
# ---------------------------------------------------------------------------------------------------------------


def test_no_checkpoint_means_the_shipped_one_for_the_demo_model():
    model = create_model("r18_os8_camvid")
    assert model.weights.path == SHIPPED and model.weights.sha256 == sha256(SHIPPED) and not model.training
    shipped = ck.read_state_dict(SHIPPED)
    state = model.state_dict()
    assert all(torch.equal(state[k], v.to(state[k].dtype)) for k, v in shipped.items())


def test_random_weights_only_when_asked_and_marked():
    model = create_model("r18_os8_camvid", random_weights=True, seed=3, ppm_channels=16, aux_channels=16)
    assert model.weights.random and model.weights.sha256 is None and model.weights.seed == 3
    ref = randomize_(build_model("r18_os8_camvid", ppm_channels=16, aux_channels=16), 3)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))
    with pytest.raises(UserError, match="contradict"):
        create_model("r18_os8_camvid", SHIPPED, random_weights=True)


def test_explicit_checkpoint_wins_and_records_its_sha(tmp_path):
    ckpt = ck.save_checkpoint(tmp_path / "c.pth", create_model("r18_os8_camvid", random_weights=True,
                                                                seed=4).state_dict())
    model = create_model("r18_os8_camvid", ckpt)
    assert model.weights.path == ckpt and model.weights.sha256 == sha256(ckpt)


def test_without_the_shipped_file_the_demo_model_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(ck, "REPOSITORY", tmp_path)  # an installed package: no samples/
    with pytest.raises(ck.CheckpointError) as e:
        create_model("r18_os8_camvid")
    message = str(e.value)
    assert "\n" not in message and "samples/r18_os8_camvid_camvid.pth" in message
    assert "--checkpoint PATH" in message and "--random-weights" in message


def test_published_checkpoint_is_downloaded_for_a_published_name(www, tmp_path, monkeypatch):
    url, root = www
    (root / "pspnet_resnet50os8_voc.pth").write_bytes(b"weights")
    monkeypatch.setenv("PSPNET_TRT_MODEL_BASE_URL", url)
    monkeypatch.setenv("PSPNET_TRT_CACHE", str(tmp_path / "cache"))
    path = ck.resolve_checkpoint("r50_os8_voc", progress=False)
    assert path == tmp_path / "cache" / "pspnet_resnet50os8_voc.pth" and path.read_bytes() == b"weights"
    assert ck.resolve_checkpoint("r50_os8_voc", random_weights=True) is None


def test_from_zoo_uses_the_door(monkeypatch):
    from pspnet_trt.runtime.torch_backend import TorchBackend

    backend = TorchBackend.from_zoo("r18_os8_camvid", device="cpu", input_size=(64, 96))
    assert backend.info.checkpoint_sha256 == sha256(SHIPPED)
    random = TorchBackend.from_zoo("r18_os8_camvid", device="cpu", input_size=(64, 96), random_weights=True)
    assert random.info.checkpoint_sha256 is None


def test_training_builds_through_the_door_with_torchs_initialisation(tmp_path):
    from pspnet_trt.train import TrainConfig
    from pspnet_trt.train.trainer import build

    cfg = TrainConfig(model="r18_os8_camvid", data=".", work_dir=str(tmp_path), ppm_channels=16, aux_channels=16)
    torch.manual_seed(0)
    model = build(cfg)
    torch.manual_seed(0)
    ref = PSPNet(num_classes=11, backbone="resnet18", ppm_channels=16, aux_channels=16)  # the trainer's old build
    assert model.training and model.weights.random and model.weights.seed is None
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))


# ---------------------------------------------------------------------------------------------------------------
# The commands
# ---------------------------------------------------------------------------------------------------------------


def test_export_of_a_published_name_offline_is_one_line_exit_2_and_writes_nothing(tmp_path):
    env = {**os.environ, "PSPNET_TRT_MODEL_BASE_URL": f"http://127.0.0.1:{closed_port()}",
           "PSPNET_TRT_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "engines" / "x.onnx"
    r = subprocess.run(CLI + ["export", "--model", "r50_os8_cityscapes", "--out", str(out)], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 2 and r.stdout == ""
    errors = [line for line in r.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0] == r.stderr.strip().splitlines()[-1], r.stderr
    assert errors[0].startswith("pspnet-trt export: error: cannot download pspnet_resnet50os8_cityscapes.pth")
    assert "Are you offline?" in errors[0] and "--checkpoint PATH" in errors[0]
    assert "Traceback" not in r.stderr
    assert not out.exists() and not out.parent.exists()
    assert not list((tmp_path / "cache").glob("*.pth"))


def test_export_uses_the_shipped_checkpoint_and_random_weights_only_with_the_flag(tmp_path):
    shipped, random = tmp_path / "shipped.onnx", tmp_path / "random.onnx"
    args = ["export", "--model", "r18_os8_camvid", "--input-size", "64x96"]
    r = subprocess.run(CLI + args + ["--out", str(shipped)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert metadata(shipped)["checkpoint_sha256"] == sha256(SHIPPED)
    assert "RANDOM" not in r.stderr
    r = subprocess.run(CLI + args + ["--random-weights", "--out", str(random)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    info = metadata(random)
    assert info["checkpoint_sha256"] is None and info["extra"]["random_seed"] == 0
    assert "RANDOM weights (seed 0), as asked with --random-weights" in r.stderr
    # the artifact's check against the door's model: the shipped one without flags
    r = subprocess.run(CLI + ["check-export", "--model", "r18_os8_camvid", "--onnx", str(shipped)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("flags,message", [
    (["--checkpoint", "x.pth", "--random-weights"], "argument --random-weights: not allowed with argument --checkpoint"),
    (["--random-seed", "3"], "--random-seed 3 is for random weights: add --random-weights, or drop it"),
])
def test_contradicting_weight_flags_are_refused(tmp_path, flags, message):
    out = tmp_path / "x.onnx"
    r = subprocess.run(CLI + ["export", "--model", "r18_os8_camvid", *flags, "--out", str(out)], capture_output=True,
                       text=True)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_engine_random_weights_reaches_the_export(tmp_path, monkeypatch):
    """`engine --random-weights`: its ONNX files are random and marked; without the flag the shipped checkpoint."""
    from pspnet_trt import engine
    from pspnet_trt.cli import build_parser
    from pspnet_trt.trt import build
    from pspnet_trt.trt.command import build_config

    def fake_build(onnx_path, out, cfg):
        Path(out).write_bytes(b"engine")
        return Path(out)

    monkeypatch.setattr(engine, "preflight", lambda: "uint8")  # as if TensorRT and a GPU were here
    monkeypatch.setattr(build, "build_engine", fake_build)
    monkeypatch.setattr("pspnet_trt.validate.check.check_artifact", lambda *a, **k: True)
    args = build_parser().parse_args(["engine", "--model", "r18_os8_camvid", "--precision", "fp32", "--input-size",
                                      "64x96", "--out-dir", str(tmp_path), "--random-weights"])
    assert engine.make_engine(args.model, build_config(args), input_size=args.input_size, out_dir=tmp_path,
                              random_weights=args.random_weights) == 0
    assert metadata(tmp_path / "r18_os8_camvid_64x96_fp32.onnx")["checkpoint_sha256"] is None
    assert engine.make_engine("r18_os8_camvid", build_config(args), input_size="64x96", out_dir=tmp_path) == 0
    assert metadata(tmp_path / "r18_os8_camvid_64x96_fp32.onnx")["checkpoint_sha256"] == sha256(SHIPPED)
