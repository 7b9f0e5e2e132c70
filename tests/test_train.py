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
    """A SIGKILL may land mid-save: it can leave a staging file (``.checkpoints-epoch-2.pth.<hex>.part``), never a
    half-written checkpoint. The resume removes the staging files (it holds the work dir's lock: no writer is
    alive) and continues from the latest complete checkpoint, bit-exactly."""
    from pspnet_trt.files import stale_staging

    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(cli(*TINY, "--epochs", "3", "--work-dir", str(full)), check=True, capture_output=True)
    proc = subprocess.Popen(cli(*TINY, "--epochs", "3", "--work-dir", str(killed)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoints-epoch-latest.pth").is_symlink() and time.monotonic() < deadline:
        time.sleep(0.05)  # epoch 1 saved and linked: what a resume continues from
    time.sleep(0.3)  # into epoch 2 (or its save)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "checkpoints-epoch-3.pth").exists(), "the run finished before it could be killed"
    for f in killed.glob("checkpoints-epoch-*.pth"):  # whatever the kill left complete is a readable checkpoint
        torch.load(f, map_location="cpu", weights_only=True)
    r = subprocess.run(cli(*TINY, "--epochs", "3", "--work-dir", str(killed), "--resume"), capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not stale_staging(killed) and not list(killed.glob("*.part")) and not (killed / ".train.lock").exists()
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


def latest_ckpt(work: Path) -> dict:
    return torch.load(work / "checkpoints-epoch-latest.pth", map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_stop_at_time_budget_mid_epoch_then_resume_gives_identical_weights(tmp_path):
    """--max-minutes in "stop" mode stops mid-epoch; --resume continues at the next batch, bit-exactly."""
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    subprocess.run(cli(*TINY, "--epochs", "3", "--work-dir", str(full)), check=True, capture_output=True)
    budget = ["--epochs", "3", "--work-dir", str(stopped), "--max-minutes", "0.004", "--budget-mode", "stop"]
    subprocess.run(cli(*TINY, *budget), check=True, capture_output=True)
    positions = []
    for _ in range(13):  # each invocation trains at least one iteration
        ckpt = latest_ckpt(stopped)
        if ckpt["cur_iter"] == 12:
            break
        positions.append((ckpt["cur_epoch"], ckpt["epoch_batch"], ckpt["cur_iter"]))
        assert ckpt["cur_iter"] == 4 * ckpt["cur_epoch"] + ckpt["epoch_batch"]
        subprocess.run(cli(*TINY, *budget, "--resume"), check=True, capture_output=True)
    assert positions, "the budget never stopped the run"
    assert any(batch > 0 for _, batch, _ in positions), f"no stop fell mid-epoch: {positions}"
    a, b = weights(full / "checkpoints-epoch-latest.pth"), weights(stopped / "checkpoints-epoch-latest.pth")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert latest_ckpt(stopped)["cur_epoch"] == 3


@pytest.mark.slow
def test_keep_last_n_epoch_checkpoints_plus_latest_and_best(tmp_path):
    subprocess.run(cli(*TINY, "--epochs", "4", "--keep", "2", "--eval-every", "1", "--work-dir", str(tmp_path)),
                   check=True, capture_output=True)
    names = sorted(p.name for p in tmp_path.glob("checkpoints-*.pth"))
    assert names == ["checkpoints-best.pth", "checkpoints-epoch-3.pth", "checkpoints-epoch-4.pth",
                     "checkpoints-epoch-latest.pth"]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    mious = [r["miou"] for r in records]
    best = torch.load(tmp_path / "checkpoints-best.pth", map_location="cpu", weights_only=True)
    assert best["miou"] == pytest.approx(max(mious))
    assert best["cur_epoch"] == 1 + mious.index(max(mious))


@pytest.mark.slow
def test_resume_with_another_model_or_recipe_is_one_clear_line(tmp_path):
    subprocess.run(cli(*TINY, "--iters", "1", "--work-dir", str(tmp_path)), check=True, capture_output=True)
    other_model = [a if a != "16" else "32" for a in TINY]  # PPM / auxiliary widths 32 instead of 16
    r = subprocess.run(cli(*other_model, "--iters", "1", "--work-dir", str(tmp_path), "--resume"),
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [line for line in r.stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert "ppm_channels=16" in lines[0] and "ppm_channels=32" in lines[0]
    r = subprocess.run(cli(*TINY, "--iters", "1", "--crop", "32x32", "--work-dir", str(tmp_path), "--resume"),
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "crop=64x64" in r.stderr and "crop=32x32" in r.stderr


def test_lr_is_honoured_as_given_and_negative_refused():
    from pspnet_trt.errors import UserError
    from pspnet_trt.train import TrainConfig

    base = dict(model="r18_os8_camvid", data=SAMPLE, work_dir="w")
    assert TrainConfig(**base).resolved().lr == 0.01  # the recipe's
    assert TrainConfig(**base, lr=0.0).resolved().lr == 0.0
    with pytest.raises(UserError, match="--lr -0.1"):
        TrainConfig(**base, lr=-0.1).resolved()
    r = subprocess.run(cli("--help"), capture_output=True, text=True, check=True)
    words = r.stdout.split()
    assert "default: the recipe's" in " ".join(words[words.index("--lr"):][:20])


def test_light_augmentation_is_a_native_scale_crop_and_flip():
    from pspnet_trt.data import open_dataset
    from pspnet_trt.preprocess import normalize

    s = open_dataset("camvid", SAMPLE, "train")[0]
    norm = get_spec("r18_os8_camvid").normalization
    x, y = train_transform(s.image, s.label, (64, 96), (480, 360), norm, np.random.default_rng([0, 0, 5]), "light")
    assert x.shape == (3, 64, 96) and y.shape == (64, 96)
    full = normalize(s.image, norm)
    found = False
    for img, lab in ((full, s.label), (full[:, :, ::-1], s.label[:, ::-1])):
        for top in range(lab.shape[0] - 63):
            for left in np.flatnonzero(lab[top, :lab.shape[1] - 95] == y[0, 0]):
                if np.array_equal(lab[top:top + 64, left:left + 96], y) and np.allclose(img[:, top:top + 64, left:left + 96], x):
                    found = True
                    break
            if found:
                break
    assert found, "the light crop is not a window of the (possibly flipped) native image"
