"""A work dir holds one training run (issue 26 item 3): a fresh run over another run's checkpoints is refused in
one line naming --resume and --work-dir, and pruning (--keep) never deletes a checkpoint this run did not write."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from pspnet_trt.cli import main
from pspnet_trt.errors import UserError

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "camvid"
# 2 images, batch 2: one iteration per epoch, so an epoch checkpoint per iteration
TINY = ["train", "--model", "r18_os8_camvid", "--data", str(SAMPLE), "--batch-size", "2", "--crop", "64x64",
        "--workers", "0", "--limit-images", "2", "--eval-every", "0", "--eval-limit", "1", "--ppm-channels", "16",
        "--aux-channels", "16", "--threads", "1"]


def contents(work: Path) -> dict:
    """Every checkpoint file of ``work`` (links as their target's name) and its bytes' hash."""
    return {p.name: (f"-> {p.readlink()}" if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(work.glob("checkpoints-*.pth"))}


def test_a_fresh_run_over_another_runs_checkpoints_is_refused_and_touches_nothing(tmp_path, capsys):
    work = tmp_path / "work"
    # the older run leaves epochs 4 and 5 (the reproduction: a fresh --iters 2 --keep 1 run deleted epoch 4)
    assert main([*TINY, "--iters", "5", "--keep", "2", "--work-dir", str(work)]) == 0
    before = contents(work)
    assert set(before) == {"checkpoints-epoch-4.pth", "checkpoints-epoch-5.pth", "checkpoints-epoch-latest.pth"}
    capsys.readouterr()
    assert main([*TINY, "--iters", "2", "--keep", "1", "--work-dir", str(work)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert "--resume" in err[0] and "--work-dir" in err[0] and "checkpoints-epoch-4.pth" in err[0]
    assert contents(work) == before

    # --resume without the latest link cannot continue the run: it is not a licence to start over it either
    (work / "checkpoints-epoch-latest.pth").unlink()
    before = contents(work)
    assert main([*TINY, "--iters", "5", "--keep", "2", "--work-dir", str(work), "--resume"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "--work-dir" in err[0] and "checkpoints-epoch-latest.pth" in err[0], err
    assert contents(work) == before

    from pspnet_trt.train import TrainConfig, train

    with pytest.raises(UserError, match="another run's checkpoints"):
        train(TrainConfig(model="r18_os8_camvid", data=SAMPLE, work_dir=work, iters=1, batch_size=2, crop=(64, 64),
                          workers=0, limit_images=2, ppm_channels=16, aux_channels=16, eval_every=0, eval_limit=1))
    assert contents(work) == before


def test_prune_deletes_only_this_runs_checkpoints(tmp_path):
    """A checkpoint of another run in the work dir (here epoch 0: the lowest number, the first one pruning by
    number deletes) survives; the run's own, from both invocations of a resumed run, are pruned to --keep."""
    other, work = tmp_path / "other", tmp_path / "work"
    assert main([*TINY, "--iters", "1", "--work-dir", str(other)]) == 0
    # the first invocation stops after one iteration (epoch 1), with its checkpoint
    assert main([*TINY, "--epochs", "3", "--keep", "1", "--work-dir", str(work), "--budget-mode", "stop",
                 "--max-minutes", "0.00001"]) == 0
    assert (work / "checkpoints-epoch-1.pth").is_file() and not (work / "checkpoints-epoch-2.pth").exists()
    foreign = work / "checkpoints-epoch-0.pth"
    shutil.copyfile(other / "checkpoints-epoch-1.pth", foreign)
    digest = hashlib.sha256(foreign.read_bytes()).hexdigest()
    assert main([*TINY, "--epochs", "3", "--keep", "1", "--work-dir", str(work), "--resume"]) == 0
    assert sorted(p.name for p in work.glob("checkpoints-*.pth")) == [
        "checkpoints-epoch-0.pth", "checkpoints-epoch-3.pth", "checkpoints-epoch-latest.pth"]
    assert hashlib.sha256(foreign.read_bytes()).hexdigest() == digest
