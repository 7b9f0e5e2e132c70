"""Issue 25, "the first hour": what a newcomer meets runs as written and says what it is.

- every command the product prints as advice runs as written (ROOT and DIR the only placeholders);
- an artifact with random weights says so at every open and in `info`;
- check-export works on every export (labels outputs compared as labels);
- `make engine` checks TensorRT and a GPU before anything is downloaded or exported, and its hints name make
  variables; its PyTorch reference runs where the machine can (device auto);
- quantization shows one progress bar, and ONNX Runtime's own prints and warnings stay out of the console.
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
from pathlib import Path

import pytest

from pspnet_trt.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "camvid"
SHIPPED = ROOT / "samples" / "r18_os8_camvid_camvid.pth"
PLACEHOLDERS = {"ROOT", "DIR"}


def cli(*args) -> int:
    from pspnet_trt.cli import main

    return main([str(a) for a in args])


def backticked(text: str) -> list:
    """The `pspnet-trt ...` commands quoted in ``text``."""
    return [c for c in re.findall(r"`([^`]+)`", text) if c.startswith("pspnet-trt ")]


def run_as_written(command: str, data: Path, report: Path) -> int:
    """Run a suggested command with ROOT and DIR filled in (and nothing else changed), in this process."""
    words = shlex.split(command)
    capitals = {w for w in words if re.fullmatch(r"[A-Z][A-Z_]+", w)}
    assert capitals <= PLACEHOLDERS, f"placeholders other than ROOT/DIR in {command!r}: {capitals - PLACEHOLDERS}"
    assert words[0] == "pspnet-trt"
    filled = [str(data) if w == "ROOT" else str(report) if w == "DIR" else w for w in words[1:]]
    return cli(*filled)


@pytest.fixture(scope="module")
def shipped_onnx(tmp_path_factory):
    """The shipped checkpoint exported at 64x96 (labels output, the default)."""
    from pspnet_trt.export import export_zoo

    return export_zoo("r18_os8_camvid", tmp_path_factory.mktemp("shipped") / "shipped_64x96.onnx",
                      checkpoint=SHIPPED, input_size=(64, 96))


def warnings_at_open(path, caplog) -> list:
    from pspnet_trt.runtime import Segmenter

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        Segmenter.open(path, device="cpu").close()
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "segmenter" in r.name]


def test_suggested_validate_commands_run_as_written(shipped_onnx, tmp_path, caplog, capsys, monkeypatch):
    """`info` and the warning at open suggested `pspnet-trt validate --model M --data ROOT --onnx F --report DIR`,
    which named no checkpoint (r18_os8_camvid has no published one: it stopped there). Now the command names the
    checkpoint the artifact was exported from, and runs as written once ROOT and DIR are filled in."""
    from pspnet_trt.records import read_record

    monkeypatch.chdir(ROOT)  # where a newcomer runs them: the shipped checkpoint is then samples/...
    # ROOT = the committed CamVid sample (the layout of a CamVid root): the full set takes minutes here
    onnx = tmp_path / "m.onnx"
    shutil.copy(shipped_onnx, onnx)
    (warning,) = warnings_at_open(onnx, caplog)
    assert "never validated" in warning
    assert cli("info", onnx) == 0
    info_out = capsys.readouterr().out
    suggested = backticked(warning) + backticked(info_out)
    assert len(suggested) == 2 and suggested[0] == suggested[1], (warning, info_out)
    assert "--checkpoint samples/r18_os8_camvid_camvid.pth" in suggested[0]
    assert run_as_written(suggested[0], SAMPLE, tmp_path / "report") == 0
    assert read_record(onnx)["passed"] is True
    assert warnings_at_open(onnx, caplog) == []  # a full validation: nothing left to suggest


def test_every_warning_at_open_suggests_a_command_that_runs(shipped_onnx, tmp_path, caplog):
    """Stale, agreement-only and partial records: each warning's command runs as written."""
    from pspnet_trt.files import sha256_file
    from pspnet_trt.records import write_record

    onnx = tmp_path / "m.onnx"
    shutil.copy(shipped_onnx, onnx)
    fp = {"artifact_bytes": onnx.stat().st_size, "artifact_sha256": sha256_file(onnx)}
    cases = {
        "stale": {"kind": "miou", "passed": True, "images": 233, "artifact_bytes": 1},
        "labels agreement": {"kind": "agreement", "passed": True, "images": 3, **fp},
        "partial": {"kind": "miou", "passed": True, "images": 4, "split_images": 233, "split": "test", **fp},
    }
    commands = set()
    for expected, record in cases.items():
        write_record(onnx, record)
        (warning,) = warnings_at_open(onnx, caplog)
        assert expected in warning, warning
        commands.update(backticked(warning))
    assert len(commands) == 1  # the same command each time: validate this file with its checkpoint
    assert run_as_written(commands.pop(), SAMPLE, tmp_path / "r") == 0


def test_the_check_after_a_build_suggests_a_command_that_runs(shipped_onnx, tmp_path, caplog, monkeypatch):
    """The last log line of `make engine`'s agreement-only check (it said `--engine` for any artifact and no
    checkpoint)."""
    from pspnet_trt.validate.check import check_artifact

    monkeypatch.chdir(ROOT)
    onnx = tmp_path / "m.onnx"
    shutil.copy(shipped_onnx, onnx)
    with caplog.at_level(logging.INFO):
        assert check_artifact("r18_os8_camvid", onnx, checkpoint=SHIPPED, images_dir=SAMPLE / "test", limit=2,
                              device="cpu")
    (command,) = [c for r in caplog.records if "agreement only" in r.getMessage() for c in backticked(r.getMessage())]
    assert "--onnx" in command and "--checkpoint" in command
    assert run_as_written(command, SAMPLE, tmp_path / "r") == 0


def test_samples_readme_validate_command_runs_as_written(tmp_path, monkeypatch):
    """samples/README.md gave `pspnet-trt validate --checkpoint ... --data $CAMVID_ROOT`, without the required
    --model and --report (argparse stopped it)."""
    text = (ROOT / "samples" / "README.md").read_text()
    (command,) = [c for c in backticked(text) if c.startswith("pspnet-trt validate --model r18_os8_camvid")]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "samples").symlink_to(ROOT / "samples")
    words = [str(SAMPLE) if w == "$CAMVID_ROOT" else w for w in shlex.split(command)]  # the 6-image sample as the set
    assert cli(*words[1:]) == 0
    assert (tmp_path / "reports" / "shipped_checkpoint" / "report.md").is_file()


def test_random_weights_say_so_at_every_open_and_in_info(tiny_onnx, tmp_path, caplog, capsys):
    """checkpoint_sha256 None (random weights): the warning said only "never validated" (which a good model gets
    too), and nothing at all once a record passed."""
    from pspnet_trt.files import sha256_file
    from pspnet_trt.records import write_record

    onnx = tmp_path / "random.onnx"
    shutil.copy(tiny_onnx, onnx)
    for record in (None, {"kind": "miou", "passed": True, "images": 233, "artifact_bytes": onnx.stat().st_size,
                          "artifact_sha256": sha256_file(onnx)}):
        if record:
            write_record(onnx, record)
        (warning,) = warnings_at_open(onnx, caplog)
        assert "RANDOM WEIGHTS" in warning, warning
        assert not backticked(warning)  # nothing to validate a random model against
        assert cli("info", onnx) == 0
        assert "RANDOM WEIGHTS" in capsys.readouterr().out


# --- check-export on every export ------------------------------------------------------------------------------

def labels_export(model, tmp_path, **info_changes):
    from pspnet_trt.deploy import DeployInfo
    from pspnet_trt.export import export_onnx
    from pspnet_trt.zoo import get_spec

    info = DeployInfo.from_spec(get_spec("r18_os8_camvid"), input_size=(64, 96), output="labels")
    return export_onnx(model, info.with_(**info_changes), tmp_path / f"{len(info_changes)}.onnx")


def test_check_export_compares_labels_outputs_as_labels(tiny_model, tmp_path):
    """The default export (labels only) and a raw-frame one: check_export raised ValueError ("has no logits
    output"), which the CLI showed as a traceback."""
    import cv2

    from pspnet_trt.export import check_export
    from pspnet_trt.models import create_model

    labels = labels_export(tiny_model, tmp_path)
    frames = labels_export(tiny_model, tmp_path, input_format="bgr8", frame_size=(96, 144))
    images = [cv2.imread(str(p)) for p in sorted((SAMPLE / "test").glob("*.jpg"))[:2]]
    for path in (labels, frames):
        for given in (None, images):
            report = check_export(tiny_model, path, images=given)
            assert report.compared == "labels" and report.max_abs_logit_diff is None
            assert report.argmax_agreement == 1.0, report  # same weights, same arithmetic up to float sums
    # and it can fail: other weights disagree
    other = create_model("r18_os8_camvid", random_weights=True, seed=1, ppm_channels=16, aux_channels=16)
    assert check_export(other, labels, images=images).argmax_agreement < 0.9


def test_check_export_cli_on_the_default_export(shipped_onnx, capsys):
    assert cli("check-export", "--model", "r18_os8_camvid", "--checkpoint", SHIPPED, "--onnx", shipped_onnx) == 0
    assert "labels compared as labels, agreement 100.0000 %" in capsys.readouterr().out


# --- make engine: TensorRT first, make variables, device auto --------------------------------------------------

def test_engine_checks_tensorrt_before_downloading_or_exporting(monkeypatch):
    """It downloaded (~186 MB) and exported before saying TensorRT was missing."""
    from pspnet_trt import checkpoints, engine, export
    from pspnet_trt.trt import plan
    from pspnet_trt.trt.build import BuildConfig

    calls = []
    monkeypatch.setattr(plan, "engine_plan", lambda: ("TensorRT is not installed", "uint8"))
    monkeypatch.setattr(checkpoints, "resolve_checkpoint", lambda *a, **k: calls.append("checkpoint"))
    monkeypatch.setattr(checkpoints, "fetch_checkpoint", lambda *a, **k: calls.append("download"))
    monkeypatch.setattr(export, "export_zoo", lambda *a, **k: calls.append("export"))
    with pytest.raises(UserError, match="TensorRT is not installed.*nothing was downloaded or exported"):
        engine.make_engine("r50_os8_cityscapes", BuildConfig(precision="fp16"))
    assert calls == []


def test_make_engine_hints_name_make_variables(monkeypatch, capsys):
    """Under `make engine` the hints say CHECKPOINT=PATH / DATA=ROOT, not the flags a make user cannot pass."""
    from pspnet_trt import checkpoints
    from pspnet_trt.trt import plan

    monkeypatch.setattr(plan, "engine_plan", lambda: (None, "uint8"))

    def offline(*args, **kwargs):
        raise checkpoints.DownloadError("cannot download x.pth: tried https://a/x.pth (no answer). Are you offline? "
                                        "Download the file elsewhere and pass it with --checkpoint PATH")

    monkeypatch.setattr(checkpoints, "resolve_checkpoint", offline)
    assert cli("engine", "--model", "r50_os8_cityscapes", "--precision", "fp16") == 2
    assert "--checkpoint PATH" in capsys.readouterr().err
    monkeypatch.setenv("PSPNET_TRT_MAKE", "1")
    assert cli("engine", "--model", "r50_os8_cityscapes", "--precision", "fp16") == 2
    err = capsys.readouterr().err
    assert "CHECKPOINT=PATH" in err and "--checkpoint" not in err
    assert cli("engine", "--model", "r50_os8_cityscapes", "--precision", "int8") == 2
    assert "DATA=ROOT" in capsys.readouterr().err


def test_make_engine_sets_the_make_hint_variable():
    from test_calibration_list import dry_run

    (line,) = [w for w in dry_run("engine", CHECKPOINT="c.pth") if "engine" in w]
    assert line[0] == "PSPNET_TRT_MAKE=1" and line[line.index("--checkpoint") + 1] == "c.pth"


# --- quiet quantization ----------------------------------------------------------------------------------------

def test_quantize_shows_one_bar_and_keeps_onnxruntime_out_of_the_console(tiny_model, tmp_path, capfd, caplog):
    """ONNX Runtime printed "Collecting tensor data and making histogram ..." once per calibration image and two
    root-logger warnings with a URL, and there was no progress."""
    from pspnet_trt.quant import CalibrationList, make_calibration_list, quantize_onnx

    fp32 = labels_export(tiny_model, tmp_path)
    listed = make_calibration_list("r18_os8_camvid", SAMPLE, "train", 3, seed=0, out=tmp_path / "cal.txt")
    capfd.readouterr()
    with caplog.at_level(logging.DEBUG):
        quantize_onnx(fp32, CalibrationList.read(listed, SAMPLE), tmp_path / "int8.onnx")
    out, err = capfd.readouterr()
    assert out == "", out
    assert "Collecting tensor data" not in err and "onnxruntime-inference-examples" not in err
    # the one bar, over the 3 images (tqdm may skip drawing the last step before a leave=False bar is cleared)
    assert "quantize: calibration" in err and "/3 [" in err
    shown = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not shown, [r.getMessage() for r in shown]
    debug = [r.getMessage() for r in caplog.records if r.name == "pspnet_trt.quant.qdq" and r.levelno == logging.DEBUG]
    assert any("Collecting tensor data" in m for m in debug)  # kept, in the log
