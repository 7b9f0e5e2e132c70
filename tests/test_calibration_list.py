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


# --- issue 25.6: one artifact naming scheme (make == pspnet_trt/engine.py) ------------------------------------

@pytest.mark.parametrize("variables,size,frame", [
    ({}, None, None),
    ({"INPUT_SIZE": "180x240"}, (180, 240), None),
    ({"FRAME": "720x1280"}, None, (720, 1280)),
    ({"MODEL": "r50_os8_cityscapes", "INPUT_SIZE": "256x512", "FRAME": "1024x2048"}, (256, 512), (1024, 2048)),
])
def test_make_names_are_engine_py_names(variables, size, frame):
    """`make export` wrote engines/M_fp16.onnx, `make engine` engines/M_HxW_fp16.onnx: two schemes for one
    artifact. Now every target takes its names from engine.artifact_name, as `pspnet-trt engine` does."""
    from pspnet_trt.engine import artifact_name

    model = variables.get("MODEL", "r18_os8_camvid")
    lines = dry_run("export", "quantize", DATA="/data/camvid", **variables)
    exported = [option(line, "--out") for line in lines if "export" in line]
    (quantize,) = [line for line in lines if "quantize" in line]
    assert exported == [f"engines/{artifact_name(model, p, size, frame)}" for p in ("fp32", "fp16")]
    assert option(quantize, "--onnx") == exported[0]
    assert option(quantize, "--out") == f"engines/{artifact_name(model, 'int8', size, frame)}"
    for line in lines:  # the size and frame reach the commands that make the files so named
        assert (option(line, "--input-size") if "--input-size" in line else None) == (
            None if size is None or "quantize" in line else "x".join(map(str, size)))
    (engine,) = [line for line in dry_run("engine", **variables) if "engine" in line]
    assert (option(engine, "--input-size") if "--input-size" in engine else None) == (
        None if size is None else "x".join(map(str, size)))
    assert (option(engine, "--frame-size") if "--frame-size" in engine else None) == (
        None if frame is None else "x".join(map(str, frame)))


def test_the_scheme_is_written_once_and_the_readme_examples_follow_it():
    from pspnet_trt.engine import artifact_name

    scheme = "<model>_<H>x<W>[_frame<FH>x<FW>|_pixels]_<precision>"
    assert scheme in (ROOT / "engines" / "README.md").read_text()
    assert scheme in (ROOT / "README.md").read_text()
    names = set(re.findall(r"engines/([\w.]+\.(?:onnx|engine|plan))", (ROOT / "README.md").read_text()))
    assert names
    pattern = re.compile(r"(r18_os8_camvid|r50_os8_cityscapes)_(\d+)x(\d+)(?:_frame(\d+)x(\d+))?_(fp32|fp16|int8|best)"
                         r"(_fixed)?\.(onnx|engine|plan)")
    for name in names:
        if re.fullmatch(r"M_HxW_(fp32|fp16|int8)\.(onnx|engine)", name):  # the scheme with placeholders
            continue
        m = pattern.fullmatch(name)
        assert m, f"README example engines/{name} does not follow {scheme}"
        model, h, w, fh, fw, precision, fixed, suffix = m.groups()
        frame = (int(fh), int(fw)) if fh else None
        if not fixed:
            assert name == artifact_name(model, precision, (int(h), int(w)), frame, suffix=f".{suffix}")


# --- issue 26.4: a generated list never clobbers a committed one ---------------------------------------------

def test_calibrate_leaves_an_identical_list_and_refuses_to_replace_another(tmp_path):
    """`calibrate` without --out (and `make engine` at INT8) rewrote calibration/<model>_train_n64_s0.txt in place:
    a list that differed (an added `# input-size` line) showed up as a change to a tracked file."""
    out = tmp_path / "calibration" / "r18_os8_camvid_train_n4_s0.txt"
    first = make_calibration_list("r18_os8_camvid", SAMPLE, "train", 4, seed=0, out=out)
    committed = out.read_text()
    stamp = out.stat().st_mtime_ns
    assert make_calibration_list("r18_os8_camvid", SAMPLE, "train", 4, seed=0, out=out) == first
    assert out.stat().st_mtime_ns == stamp  # the same list: not even rewritten
    with pytest.raises(UserError, match=r"exists with another list.*--overwrite"):
        make_calibration_list("r18_os8_camvid", SAMPLE, "train", 4, seed=0, out=out, input_size=(360, 480))
    assert out.read_text() == committed
    with pytest.raises(UserError, match="exists with another list"):
        make_calibration_list("r18_os8_camvid", SAMPLE, "train", 4, seed=1, out=out)
    assert out.read_text() == committed
    make_calibration_list("r18_os8_camvid", SAMPLE, "train", 4, seed=0, out=out, input_size=(360, 480), overwrite=True)
    assert "# input-size: 360x480" in out.read_text()


def test_calibrate_cli_default_out_keeps_the_committed_list(tmp_path, monkeypatch, capsys):
    """The CLI without --out, run from the checkout: the committed list of the default model is not touched."""
    from pspnet_trt.cli import main

    committed = ROOT / "calibration" / "r18_os8_camvid_train_n64_s0.txt"
    before = committed.read_bytes()
    shutil.copytree(ROOT / "calibration", tmp_path / "calibration")
    monkeypatch.chdir(tmp_path)  # a copy of the checkout's calibration/: what a fresh clone holds
    data = tmp_path / "camvid"
    shutil.copytree(SAMPLE, data)
    for i in range(48):  # 64 training images, with other content than the full set's: another selection
        shutil.copy(next((SAMPLE / "train").glob("*.jpg")), data / "train" / f"x{i}.jpg")
        shutil.copy(next((SAMPLE / "trainannot").glob("*.png")), data / "trainannot" / f"x{i}.png")
    assert main(["calibrate", "--model", "r18_os8_camvid", "--data", str(data)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "calibration" / committed.name).read_bytes() == before
    assert main(["calibrate", "--model", "r18_os8_camvid", "--data", str(data), "--overwrite"]) == 0
    assert (tmp_path / "calibration" / committed.name).read_bytes() != before
    assert committed.read_bytes() == before


def test_make_calibrate_overwrites_only_when_told():
    (line,) = [w for w in dry_run("calibrate", DATA="/data/camvid") if "calibrate" in w]
    assert "--overwrite" not in line
    (line,) = [w for w in dry_run("calibrate", DATA="/data/camvid", OVERWRITE="1") if "calibrate" in w]
    assert "--overwrite" in line


def test_engine_int8_draws_its_list_beside_its_artifacts(tmp_path, monkeypatch):
    """`make engine PRECISION=int8 DATA=...` wrote calibration/<model>_train_n64_s0.txt (the committed list)."""
    from pspnet_trt import export, quant
    from pspnet_trt.engine import make_engine
    from pspnet_trt.trt import build as trt_build
    from pspnet_trt.trt import plan
    from pspnet_trt.trt.build import BuildConfig

    drawn = []

    def draw(model, data, split, n, seed, out=None, **kwargs):
        drawn.append(Path(out) if out else None)
        raise UserError("stop here")  # the rest of the build is tested elsewhere

    monkeypatch.setattr(plan, "engine_plan", lambda: (None, "uint8"))
    monkeypatch.setattr(export, "export_zoo", lambda model, out, **kwargs: Path(out))
    monkeypatch.setattr(quant, "make_calibration_list", draw)
    monkeypatch.setattr(trt_build, "build_engine", lambda *a: pytest.fail("not reached"))
    with pytest.raises(UserError, match="stop here"):
        make_engine("r18_os8_camvid", BuildConfig(precision="int8"), checkpoint=ROOT / "samples" / "x.pth",
                    data=SAMPLE, out_dir=tmp_path / "engines")
    assert drawn == [tmp_path / "engines" / "r18_os8_camvid_train_n64_s0.txt"]
