"""Issue 14 item 21: calibration lists hold paths relative to the dataset root (the root comes from --data),
and the Makefile's export, calibrate and quantize targets agree on their file names."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pspnet_trt.errors import UserError
from pspnet_trt.quant import CalibrationList, make_calibration_list

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "camvid"


def test_list_is_relative_to_the_root_given_at_read_time(tmp_path):
    first = tmp_path / "first" / "camvid"
    shutil.copytree(SAMPLE, first)
    listed = make_calibration_list("r18_os8_camvid", first, "train", 4, seed=0, out=tmp_path / "cal.txt")
    text = listed.read_text()
    assert str(tmp_path) not in text, text  # nothing of this machine's layout
    images = [line for line in text.splitlines() if not line.startswith("#")]
    assert len(images) == 4 and all(not os.path.isabs(p) and p.startswith("train/") for p in images)
    moved = tmp_path / "elsewhere" / "camvid"
    shutil.move(str(first), moved)
    cal = CalibrationList.read(listed, moved)
    assert cal.images == [moved / p for p in images] and all(p.is_file() for p in cal.images)
    with pytest.raises(UserError, match=r"relative to the dataset root.*--data"):
        CalibrationList.read(listed)


def test_committed_lists_carry_no_machine_path():
    lists = sorted((ROOT / "calibration").glob("*.txt"))
    assert lists
    for path in lists:
        for line in path.read_text().splitlines():
            assert not re.search(r"(^|\s)/\S", line), f"{path.name}: absolute path in {line!r}"


def test_committed_list_reads_with_the_dataset_root():
    root = os.environ.get("CAMVID_ROOT")
    if not root or not Path(root).is_dir():
        pytest.skip("CAMVID_ROOT is not set: the full CamVid set is needed")
    cal = CalibrationList.read(ROOT / "calibration" / "r18_os8_camvid_train_n64_s0.txt", root)
    assert len(cal.images) == 64 and all(p.is_file() for p in cal.images)


def dry_run(*targets: str, **variables: str) -> list:
    """The pspnet-trt command lines `make -n` would run (nothing is executed)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    args = ["make", "-n", "-C", str(ROOT), *targets, *(f"{k}={v}" for k, v in variables.items())]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [line.split() for line in out.splitlines() if "pspnet-trt " in line]


def option(line: list, name: str) -> str:
    return line[line.index(name) + 1]


def test_make_export_then_quantize_chain_with_the_defaults():
    lines = dry_run("export", "calibrate", "quantize", DATA="/data/camvid")
    exported = [option(line, "--out") for line in lines if "export" in line]
    calibrated = [option(line, "--out") for line in lines if "calibrate" in line]
    (quantize,) = [line for line in lines if "quantize" in line]
    assert option(quantize, "--onnx") in exported, (exported, quantize)
    assert option(quantize, "--calibration") in calibrated + ["calibration/r18_os8_camvid_train_n64_s0.txt"]
    assert option(quantize, "--calibration") == calibrated[0]
    assert option(quantize, "--data") == "/data/camvid"
    assert (ROOT / option(quantize, "--calibration")).is_file()  # the committed list of the default model
