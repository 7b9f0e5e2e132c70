"""No command writes over one of its own inputs, and a bad value is one line, exit 2, with nothing written.

An output that is an input (the same path, a symlink or a hard link to it) is refused before anything is read or
written: `export --checkpoint X --out X` replaced the trained checkpoint with an ONNX, `quantize --onnx X --out X`
the FP32 export with its INT8 version."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import pytest

from pspnet_trt.cli import main

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "camvid"
CHECKPOINT = REPO / "samples" / "r18_os8_camvid_camvid.pth"
IMAGE = sorted((SAMPLE / "test").iterdir())[0]


def snapshot(root: Path) -> dict:
    """Every entry under ``root`` (hidden staging files included) with its bytes' hash."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


def one_line_exit_2(capsys, argv) -> str:
    """Run the CLI in-process: exit 2 with one line on stderr (a UserError, or a value argparse refuses)."""
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse refuses a value while parsing
        rc = e.code
    err = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines()
           if line.strip() and not re.search(r"\d+%\|", line)]  # progress bars (predict, calibrate)
    assert rc == 2, err
    assert len(err) == 1, err
    return err[0]


@pytest.fixture
def checkpoint_named_onnx(tmp_path) -> Path:
    """The shipped checkpoint under a name an --out could take."""
    ckpt = tmp_path / "model.onnx"
    shutil.copyfile(CHECKPOINT, ckpt)
    return ckpt


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink", "relative"])
def test_export_over_its_own_checkpoint_is_refused(tmp_path, checkpoint_named_onnx, capsys, monkeypatch, how):
    ckpt = checkpoint_named_onnx
    out = {"same": ckpt, "symlink": tmp_path / "link.onnx", "hardlink": tmp_path / "hard.onnx",
           "relative": Path("sub") / ".." / ckpt.name}[how]
    if how == "symlink":
        out.symlink_to(ckpt)
    elif how == "hardlink":
        os.link(ckpt, out)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    err = one_line_exit_2(capsys, ["export", "--model", "r18_os8_camvid", "--checkpoint", str(ckpt), "--input-size",
                                   "64x64", "--out", str(out)])
    assert "is also an input" in err and str(out) in err, err
    assert snapshot(tmp_path) == before


def test_export_out_that_is_not_onnx_is_refused(tmp_path, capsys):
    err = one_line_exit_2(capsys, ["export", "--model", "r18_os8_camvid", "--random-weights", "--input-size", "64x64",
                                   "--out", str(tmp_path / "model.pth")])
    assert ".onnx" in err and "model.pth" in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def calibration(tmp_path) -> Path:
    cal = tmp_path / "cal.txt"
    cal.write_text(f"{IMAGE}\n")
    return cal


def test_quantize_over_its_own_onnx_or_list_is_refused(tmp_path, tiny_onnx, calibration, capsys):
    onnx = tmp_path / "fp32.onnx"
    shutil.copyfile(tiny_onnx, onnx)
    before = snapshot(tmp_path)
    err = one_line_exit_2(capsys, ["quantize", "--onnx", str(onnx), "--calibration", str(calibration), "--out",
                                   str(onnx)])
    assert "is also an input" in err, err
    assert snapshot(tmp_path) == before
    (tmp_path / "int8.onnx").symlink_to(onnx)
    err = one_line_exit_2(capsys, ["quantize", "--onnx", str(onnx), "--calibration", str(calibration), "--out",
                                   str(tmp_path / "int8.onnx")])
    assert "the same file as the input" in err, err


def test_the_check_is_shared_by_the_other_writers(tmp_path, tiny_onnx, capsys):
    """check-export --json, debug --out and deepstream --out go through the same check."""
    from pspnet_trt.errors import UserError
    from pspnet_trt.files import check_outputs

    onnx = tmp_path / "a.onnx"
    shutil.copyfile(tiny_onnx, onnx)
    err = one_line_exit_2(capsys, ["check-export", "--model", "r18_os8_camvid", "--random-weights", "--onnx",
                                   str(onnx), "--json", str(onnx)])
    assert "is also an input" in err
    err = one_line_exit_2(capsys, ["debug", "--reference", str(onnx), "--artifact", str(onnx), "--out", str(onnx)])
    assert "is also an input" in err
    with pytest.raises(UserError, match="holds the input"):
        check_outputs([], [onnx], folders=[tmp_path])
    check_outputs([tmp_path / "b.onnx"], [onnx], folders=[tmp_path / "other"])  # distinct: fine


# -- bad values: one line, exit 2, nothing written ----------------------------------------------------------------

def test_validate_threads_must_be_positive(tmp_path, tiny_onnx, capsys):
    err = one_line_exit_2(capsys, ["validate", "--model", "r18_os8_camvid", "--random-weights", "--onnx",
                                   str(tiny_onnx), "--data", str(SAMPLE), "--limit", "1", "--threads", "-1",
                                   "--report", str(tmp_path / "report")])
    assert "--threads" in err and "1 or more" in err, err
    assert list(tmp_path.iterdir()) == []


def test_quantize_calibration_that_is_not_a_text_list(tmp_path, tiny_onnx, capsys):
    err = one_line_exit_2(capsys, ["quantize", "--onnx", str(tiny_onnx), "--calibration", str(tiny_onnx), "--out",
                                   str(tmp_path / "int8.onnx")])
    assert "not a calibration list" in err, err
    assert list(tmp_path.iterdir()) == []


def test_export_frame_size_is_bounded(tmp_path, capsys):
    err = one_line_exit_2(capsys, ["export", "--model", "r18_os8_camvid", "--random-weights", "--input-format",
                                   "bgr8", "--frame-size", "100000x100000", "--out", str(tmp_path / "raw.onnx")])
    assert "--frame-size 100000x100000 is too large" in err and "16384" in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, flag", [
    (["export", "--model", "r18_os8_camvid", "--random-weights", "--input-size", "64x64", "--num-classes", "0",
      "--out", "{tmp}/m.onnx"], "--num-classes"),
    (["calibrate", "--model", "r18_os8_camvid", "--data", str(SAMPLE), "--split", "test", "--force",
      "--num-images", "0", "--out", "{tmp}/cal.txt"], "--num-images"),
    (["predict", "--model", "{onnx}", "--alpha", "5", "--out", "{tmp}/pred", str(IMAGE)], "--alpha"),
    (["predict", "--model", "{onnx}", "--alpha", "nan", "--out", "{tmp}/pred", str(IMAGE)], "--alpha"),
])
def test_values_accepted_before_are_refused(tmp_path, tiny_onnx, capsys, argv, flag):
    argv = [a.format(tmp=tmp_path, onnx=tiny_onnx) for a in argv]
    err = one_line_exit_2(capsys, argv)
    assert flag in err, err
    assert list(tmp_path.iterdir()) == []


def test_check_export_notices_another_model_before_downloading(tmp_path, tiny_onnx, capsys, monkeypatch, www):
    url, root = www
    monkeypatch.setenv("PSPNET_TRT_MODEL_BASE_URL", url)
    monkeypatch.setenv("PSPNET_TRT_CACHE", str(tmp_path / "cache"))
    err = one_line_exit_2(capsys, ["check-export", "--model", "r50_os8_voc", "--onnx", str(tiny_onnx)])
    assert "exported from r18_os8_camvid, not r50_os8_voc" in err and "--model r18_os8_camvid" in err, err
    assert not (tmp_path / "cache").exists()


# -- predict: no output is an input, no folder for nothing ----------------------------------------------------------

def test_predict_never_writes_over_an_input(tmp_path, tiny_onnx, capsys):
    """`predict --out D D/a.jpg D/a_overlay.png` wrote the overlay of a.jpg over the user's a_overlay.png."""
    d = tmp_path / "D"
    d.mkdir()
    shutil.copyfile(IMAGE, d / "a.jpg")
    shutil.copyfile(IMAGE, d / "a_overlay.png")
    before = snapshot(tmp_path)
    err = one_line_exit_2(capsys, ["predict", "--model", str(tiny_onnx), "--out", str(d), str(d / "a.jpg"),
                                   str(d / "a_overlay.png")])
    assert "a_overlay.png is also an input" in err and "--out" in err, err
    assert snapshot(tmp_path) == before
    # the folder form names it too (D holds both; a.jpg's overlay would replace the input a_overlay.png)
    err = one_line_exit_2(capsys, ["predict", "--model", str(tiny_onnx), "--out", str(d), str(d)])
    assert "a_overlay.png is also an input" in err, err
    assert snapshot(tmp_path) == before


def test_predict_on_a_non_image_leaves_no_output_folder(tmp_path, tiny_onnx, capsys):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    for pipeline in ([], ["--no-pipeline"]):
        err = one_line_exit_2(capsys, ["predict", "--model", str(tiny_onnx), *pipeline, "--out", str(tmp_path / "out"),
                                       str(bad)])
        assert "notes.png" in err, err
        assert not (tmp_path / "out").exists()


def test_calibrate_never_writes_over_a_dataset_file(tmp_path, capsys):
    data = tmp_path / "camvid"
    shutil.copytree(SAMPLE, data)
    image = sorted((data / "test").iterdir())[0]
    before = snapshot(tmp_path)
    err = one_line_exit_2(capsys, ["calibrate", "--model", "r18_os8_camvid", "--data", str(data), "--split", "test",
                                   "--force", "--num-images", "1", "--overwrite", "--out", str(image)])
    assert "is also an input" in err and image.name in err, err
    assert snapshot(tmp_path) == before
