"""Training: poly schedule, augmentation, exact resume after SIGKILL, 2-process DDP (gloo)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pspnet_trt.train import poly_lr
from pspnet_trt.train.augment import train_transform
from pspnet_trt.zoo import get_spec

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "camvid"
TINY = ["--model", "r18_os8_camvid", "--data", str(SAMPLE), "--batch-size", "2", "--crop", "64x64", "--workers", "0",
        "--limit-images", "8", "--eval-every", "0", "--eval-limit", "1", "--ppm-channels", "16", "--aux-channels", "16",
        "--threads", "1"]


def cli(*args):
    return [sys.executable, "-m", "pspnet_trt", "train", *args]


def test_poly_schedule_matches_sssegmentation():
    assert poly_lr(0.01, 0, 100) == pytest.approx(0.01)
    assert poly_lr(0.01, 100, 100) == pytest.approx(1e-4)
    assert poly_lr(0.01, 50, 100) == pytest.approx((0.01 - 1e-4) * 0.5 ** 0.9 + 1e-4)


def test_augmentation_is_deterministic_and_crop_sized():
    from pspnet_trt.data import open_dataset

    s = open_dataset("camvid", SAMPLE, "train")[0]
    norm = get_spec("r18_os8_camvid").normalization
    a = train_transform(s.image, s.label, (240, 320), (480, 360), norm, np.random.default_rng([0, 1, 2]))
    b = train_transform(s.image, s.label, (240, 320), (480, 360), norm, np.random.default_rng([0, 1, 2]))
    c = train_transform(s.image, s.label, (240, 320), (480, 360), norm, np.random.default_rng([0, 1, 3]))
    assert a[0].shape == (3, 240, 320) and a[1].shape == (240, 320)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert set(np.unique(a[1])) <= set(range(11)) | {255}


def weights(path: Path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_identical_weights(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(cli(*TINY, "--epochs", "3", "--work-dir", str(full)), check=True, capture_output=True)
    proc = subprocess.Popen(cli(*TINY, "--epochs", "3", "--work-dir", str(killed)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoints-epoch-1.pth").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # into epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "checkpoints-epoch-3.pth").exists(), "the run finished before it could be killed"
    assert not list(killed.glob("*.part"))  # nothing half-written
    subprocess.run(cli(*TINY, "--epochs", "3", "--work-dir", str(killed), "--resume"), check=True, capture_output=True)
    a, b = weights(full / "checkpoints-epoch-latest.pth"), weights(killed / "checkpoints-epoch-latest.pth")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ckpt = torch.load(killed / "checkpoints-epoch-3.pth", map_location="cpu", weights_only=True)
    assert {"cur_epoch", "cur_iter", "optimizer", "model"} <= set(ckpt) and ckpt["cur_epoch"] == 3
    assert ckpt["cur_iter"] == 12
    records = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert (killed / "curve.png").is_file()


@pytest.mark.slow
def test_torchrun_two_processes_gloo_ranks_agree(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([torchrun, "--nproc_per_node=2", "--master_port=29533", "-m", "pspnet_trt", "train", *TINY,
                        "--epochs", "2", "--batch-size", "4", "--work-dir", str(tmp_path)], capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["world_size"] == 2
    hashes = summary["rank_parameter_sha256"]
    assert len(hashes) == 2 and hashes[0] == hashes[1]
    assert summary["iterations"] == 2 * 2  # 8 images, global batch 4 (2 per rank): 2 iterations per epoch
