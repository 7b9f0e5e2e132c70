"""`pspnet-trt train --load-from PATH`: start from a checkpoint's weights (strictly, fp16 cast to fp32), with a fresh
optimizer at iteration 0 (issue 18 item 4: the demo fine-tunes a shipped checkpoint)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pspnet_trt.checkpoints import CheckpointError, save_checkpoint
from pspnet_trt.cli import main
from pspnet_trt.models import PSPNet, randomize_

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "camvid"
TINY = ["train", "--model", "r18_os8_camvid", "--data", str(SAMPLE), "--batch-size", "2", "--crop", "64x64",
        "--workers", "0", "--limit-images", "2", "--eval-every", "0", "--eval-limit", "1", "--ppm-channels", "16",
        "--aux-channels", "16", "--threads", "1", "--iters", "1", "--lr", "1e-9"]


def fp16_checkpoint(path: Path, ppm: int = 16, seed: int = 3) -> dict:
    model = randomize_(PSPNet(num_classes=11, depth=18, output_stride=8, ppm_channels=ppm, aux_channels=16), seed)
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    save_checkpoint(path, state)
    return state


def conv_weights(path: Path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    return {k: v for k, v in state.items() if k.endswith("conv1.weight") or k == "decoder.1.weight"}


def test_training_starts_from_the_loaded_weights_at_iteration_zero(tmp_path):
    start = fp16_checkpoint(tmp_path / "start.pth")
    assert main([*TINY, "--work-dir", str(tmp_path / "ft"), "--load-from", str(tmp_path / "start.pth")]) == 0
    ckpt = torch.load(tmp_path / "ft" / "checkpoints-epoch-latest.pth", map_location="cpu", weights_only=True)
    assert ckpt["cur_iter"] == 1  # iteration 0 + one step, not the loaded file's count
    assert len(ckpt["optimizer"]["state"]) > 0  # a fresh SGD that took one step
    tuned = conv_weights(tmp_path / "ft" / "checkpoints-epoch-latest.pth")
    assert tuned and all(v.dtype == torch.float32 for v in tuned.values())
    for key, value in tuned.items():  # lr 1e-9: one step moves nothing visible
        torch.testing.assert_close(value, start[key].float(), rtol=0, atol=1e-6)
    assert main([*TINY, "--work-dir", str(tmp_path / "scratch")]) == 0
    scratch = conv_weights(tmp_path / "scratch" / "checkpoints-epoch-latest.pth")
    assert not torch.allclose(scratch["decoder.1.weight"], tuned["decoder.1.weight"], atol=1e-3)
    assert "load_from" in (tmp_path / "ft" / "config.json").read_text()


def test_load_from_is_strict(tmp_path, capsys):
    fp16_checkpoint(tmp_path / "wide.pth", ppm=32)
    assert main([*TINY, "--work-dir", str(tmp_path / "x"), "--load-from", str(tmp_path / "wide.pth")]) == 2
    assert "shape mismatch" in capsys.readouterr().err
    from pspnet_trt.train import TrainConfig, train

    with pytest.raises(CheckpointError, match="wide.pth does not fit this model"):
        train(TrainConfig(model="r18_os8_camvid", data=SAMPLE, work_dir=tmp_path / "y", iters=1, batch_size=2,
                          crop=(64, 64), workers=0, limit_images=2, ppm_channels=16, aux_channels=16,
                          load_from=tmp_path / "wide.pth"))
