"""A work dir holds one live run: a second `train` in it is refused in one line while the first runs, the lock
goes with a killed run, a refused or failed start leaves nothing behind, and a resume clears the staging files a
killed run left."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from pspnet_trt.cli import main

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "camvid"
TINY = ["--model", "r18_os8_camvid", "--data", str(SAMPLE), "--batch-size", "2", "--crop", "64x64", "--workers", "0",
        "--limit-images", "2", "--eval-every", "0", "--eval-limit", "1", "--ppm-channels", "16", "--aux-channels", "16",
        "--threads", "1"]


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


def test_missing_data_leaves_no_work_dir(tmp_path, capsys):
    work = tmp_path / "work"
    args = [a if a != str(SAMPLE) else str(tmp_path / "nothere") for a in TINY]
    assert main(["train", *args, "--iters", "1", "--work-dir", str(work)]) == 2
    assert "nothere" in one_error_line(capsys)
    assert not work.exists(), sorted(work.rglob("*"))


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() or path.is_symlink()):
        assert proc.poll() is None, "the first run ended early"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_a_second_run_in_a_live_runs_work_dir_is_refused_and_a_killed_runs_lock_is_gone(tmp_path, capsys):
    work = tmp_path / "work"
    first = subprocess.Popen([sys.executable, "-m", "pspnet_trt", "train", *TINY, "--epochs", "500", "--work-dir",
                              str(work)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(work / "checkpoints-epoch-latest.pth", first)  # running, with a checkpoint to resume from
        before = sorted(p.name for p in work.iterdir())
        # the second run: fresh, or --resume of the same run; both would write the same files
        for extra in ([], ["--resume"]):
            assert main(["train", *TINY, "--epochs", "500", "--work-dir", str(work), *extra]) == 2
            err = one_error_line(capsys)
            assert "running now" in err and "--work-dir" in err and str(work) in err, err
        assert first.poll() is None
        assert {".train.lock", "train.log"} <= set(before)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # the kernel released the killed run's lock: its --resume runs (one iteration, then a clean stop)
    assert (work / ".train.lock").exists()  # the file a killed holder leaves is no lock
    assert main(["train", *TINY, "--epochs", "500", "--work-dir", str(work), "--resume", "--budget-mode", "stop",
                 "--max-minutes", "0.00001"]) == 0
    assert not (work / ".train.lock").exists()  # removed when the run ends


def test_resume_removes_the_staging_files_a_killed_run_left(tmp_path, caplog):
    """A kill during a save leaves ``.NAME.<hex>.part`` (never a half-written checkpoint): the next run of the work
    dir, holding its lock, removes them and says so."""
    work = tmp_path / "work"
    assert main(["train", *TINY, "--epochs", "3", "--work-dir", str(work), "--budget-mode", "stop",
                 "--max-minutes", "0.00001"]) == 0
    staged = [work / ".checkpoints-epoch-2.pth.0123456789ab.part", work / ".metrics.jsonl.abcdef012345.part"]
    for p in staged:
        p.write_bytes(b"half a checkpoint")
    keep = work / ".notes.part"  # not a staging name: not ours to remove
    keep.write_text("mine")
    with caplog.at_level("INFO", logger="pspnet_trt"):
        assert main(["train", *TINY, "--epochs", "3", "--work-dir", str(work), "--resume"]) == 0
    assert not any(p.exists() for p in staged)
    assert keep.read_text() == "mine"
    removed = [r.getMessage() for r in caplog.records if "left by an interrupted write" in r.getMessage()]
    assert len(removed) == 2 and all("a run killed while saving" in m for m in removed), removed
    assert "left by an interrupted write" in (work / "train.log").read_text()
