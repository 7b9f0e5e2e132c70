"""The gate around artifacts (issue 14): unreadable metadata gives one line and exit 2; validation verdicts are
written into each artifact's record, `pspnet-trt info` prints them, Segmenter.open warns about unvalidated artifacts;
`pspnet-trt engine` checks what it built, with or without a dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pspnet_trt.artifacts import read_onnx_info
from pspnet_trt.deploy import DeployInfo
from pspnet_trt.errors import UserError

SAMPLE_IMAGE = Path(__file__).resolve().parents[1] / "samples" / "camvid" / "test" / "0001TP_008550.jpg"


def cli(*args):
    from pspnet_trt.cli import main

    return main([*map(str, args)])


def one_error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


# --- issue 14.11: bad or truncated metadata -----------------------------------------------------------------

def test_cut_off_onnx_says_truncated_and_exits_2(tiny_onnx, tmp_path, capsys):
    data = tiny_onnx.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"cut\.onnx is truncated"):
        read_onnx_info(cut)
    assert cli("predict", "--model", cut, "--out", tmp_path / "o", SAMPLE_IMAGE) == 2
    err = one_error_line(capsys)
    assert "cut.onnx" in err and "truncated" in err


def test_a_file_that_is_not_onnx_is_named_so(tmp_path, capsys):
    fake = tmp_path / "photo.onnx"
    fake.write_bytes(SAMPLE_IMAGE.read_bytes())
    with pytest.raises(UserError, match=r"photo\.onnx is not an ONNX file"):
        read_onnx_info(fake)
    assert cli("predict", "--model", fake, "--out", tmp_path / "o", SAMPLE_IMAGE) == 2
    assert "photo.onnx is not an ONNX file" in one_error_line(capsys)


def _with_metadata(src: Path, dst: Path, text: str) -> Path:
    import onnx

    from pspnet_trt.deploy import METADATA_KEY

    model = onnx.load(str(src))
    for p in model.metadata_props:
        if p.key == METADATA_KEY:
            p.value = text
    onnx.save(model, str(dst))
    return dst


def test_unreadable_metadata_names_the_file_and_the_version(tiny_onnx, tiny_info, tmp_path, capsys):
    d = tiny_info.to_dict()
    d["package_version"] = "9.9.9"
    del d["normalization"]
    for text, message in (
        (json.dumps(d), r"meta\.onnx: metadata from pspnet-trt 9\.9\.9 is unreadable"),
        (tiny_info.to_json()[:40], r"meta\.onnx: its pspnet-trt metadata is truncated"),
    ):
        bad = _with_metadata(tiny_onnx, tmp_path / "meta.onnx", text)
        with pytest.raises(UserError, match=message):
            read_onnx_info(bad)
        capsys.readouterr()
        assert cli("predict", "--model", bad, "--out", tmp_path / "o", SAMPLE_IMAGE) == 2
        assert "meta.onnx" in one_error_line(capsys)
    with pytest.raises(UserError, match=r"x\.json: metadata from pspnet-trt 9\.9\.9 is unreadable"):
        DeployInfo.from_json(json.dumps(d), source="x.json")


def test_bad_engine_manifest_names_the_file(tiny_info, tmp_path):
    from pspnet_trt.trt.manifest import read_manifest

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0" * 16)
    deploy = tiny_info.to_dict()
    deploy["package_version"] = "0.0.1"
    del deploy["palette"]
    manifest = {"deploy": deploy, "tensorrt_version": "10.13.0", "gpu": {"name": "x", "compute_capability": "8.7"},
                "precision": "fp16", "input_name": "images", "input_shape": [1, 3, 64, 128], "outputs": ["labels"],
                "onnx": "m.onnx", "onnx_sha256": "0" * 64}
    (tmp_path / "m.engine.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=r"m\.engine\.json: metadata from pspnet-trt 0\.0\.1 is unreadable"):
        read_manifest(engine)
    (tmp_path / "m.engine.json").write_text(json.dumps(manifest)[:100])
    with pytest.raises(UserError, match=r"m\.engine\.json is truncated"):
        read_manifest(engine)


# --- issue 14.5: validation records, `pspnet-trt info`, the warning at open ----------------------------------

def fake_engine(tmp_path, info, name="m.engine"):
    """An engine file (bytes only: nothing here runs it) and the manifest `pspnet-trt build` writes beside it."""
    engine = tmp_path / name
    engine.write_bytes(b"\0" * 64)
    manifest = {"deploy": info.to_dict(), "tensorrt_version": "10.13.0",
                "gpu": {"name": "NVIDIA Orin", "compute_capability": "8.7"}, "precision": "fp16",
                "input_name": "images", "input_shape": [1, 3, *info.input_size], "outputs": list(info.output_names),
                "onnx": "m.onnx", "onnx_sha256": "0" * 64, "build_flags": {"fp16": True}, "build_seconds": 1.0}
    (tmp_path / f"{name}.json").write_text(json.dumps(manifest))
    return engine


def test_engine_record_goes_into_its_manifest_and_info_prints_it(tiny_info, tmp_path, capsys):
    from pspnet_trt.records import read_record, write_record
    from pspnet_trt.trt.manifest import read_manifest

    engine = fake_engine(tmp_path, tiny_info)
    assert read_record(engine) is None
    assert cli("info", engine) == 0
    out = capsys.readouterr().out
    assert "r18_os8_camvid" in out and "64x128" in out and "TensorRT 10.13.0" in out and "never validated" in out
    record = {"kind": "miou", "dataset": "camvid", "split": "test", "images": 233, "miou": 36.1, "delta": -0.1,
              "agreement": 99.5, "tolerance": 0.5, "invalid_pixels": 0, "passed": True, "date": "2026-11-25T23:00:00+00:00"}
    write_record(engine, record)
    saved = json.loads((tmp_path / "m.engine.json").read_text())
    assert saved["validation"]["miou"] == 36.1 and saved["tensorrt_version"] == "10.13.0"  # the rest is kept
    assert read_manifest(engine).validation["passed"] is True
    assert read_record(engine)["dataset"] == "camvid"
    assert cli("info", engine) == 0
    out = capsys.readouterr().out
    assert "validation: PASS" in out and "camvid test" in out and "36.10" in out and "-0.10" in out
    assert cli("info", "--json", engine) == 0
    saved = json.loads(capsys.readouterr().out)
    assert saved["validation"] == record and saved["metadata"]["model"] == "r18_os8_camvid"
    assert saved["manifest"]["gpu"]["compute_capability"] == "8.7"


def test_validate_cli_writes_records_and_info_shows_them(cli_records, tmp_path, capsys):
    root, ckpt_a, onnx_a, onnx_b = cli_records
    from pspnet_trt.cli import main

    assert main(["validate", "--model", "r18_os8_camvid", "--checkpoint", str(ckpt_a), "--data", str(root),
                 "--split", "test", "--onnx", str(onnx_a), "--onnx", str(onnx_b), "--report", str(tmp_path / "r")]) == 1
    a = json.loads(onnx_a.with_suffix(".validation.json").read_text())
    b = json.loads(onnx_b.with_suffix(".validation.json").read_text())
    for rec in (a, b):
        assert rec["dataset"] == "camvid" and rec["split"] == "test" and rec["images"] == 2
        assert rec["tolerance"] == 0.5 and rec["date"].startswith("20") and rec["invalid_pixels"] == 0
        assert {"miou", "delta", "agreement", "reference_miou", "artifact_sha256"} <= set(rec)
    assert a["passed"] is True and a["agreement"] > 99.9 and b["passed"] is False
    capsys.readouterr()
    assert cli("info", onnx_b) == 0
    out = capsys.readouterr().out
    assert "validation: FAIL" in out and "camvid test" in out and "r18_os8_camvid" in out


def test_segmenter_warns_once_about_an_unvalidated_artifact(cli_records, tmp_path, caplog):
    import logging
    import shutil

    from pspnet_trt.records import write_record
    from pspnet_trt.runtime import Segmenter

    onnx = Path(shutil.copy(cli_records[2], tmp_path / "m.onnx"))  # from a checkpoint (random weights warn anyway)
    with caplog.at_level(logging.WARNING):
        Segmenter.open(onnx).close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "never validated" in warnings[0].getMessage() and "m.onnx" in warnings[0].getMessage()
    from pspnet_trt.files import sha256_file

    write_record(onnx, {"kind": "miou", "passed": True, "artifact_sha256": sha256_file(onnx), "images": 233,
                        "artifact_bytes": onnx.stat().st_size, "date": "2026-11-25T23:00:00+00:00"})
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        Segmenter.open(onnx).close()
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    write_record(onnx, {"kind": "miou", "passed": False, "artifact_bytes": onnx.stat().st_size})
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        Segmenter.open(onnx).close()
    assert ["FAILED" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [True]


@pytest.fixture(scope="module")
def cli_records(tmp_path_factory):
    """Two full-width r18_os8_camvid checkpoints A and B at 64x128, exports of both, labels = A's predictions."""
    import cv2
    import torch

    from pspnet_trt.checkpoints import save_checkpoint
    from pspnet_trt.export import export_onnx
    from pspnet_trt.files import sha256_file
    from pspnet_trt.models import build_model, randomize_
    from pspnet_trt.preprocess import make_batch
    from pspnet_trt.runtime.torch_backend import TorchBackend
    from pspnet_trt.validate import predict_whole
    from pspnet_trt.zoo import get_spec

    spec = get_spec("r18_os8_camvid")
    tmp = tmp_path_factory.mktemp("records")
    rng = np.random.default_rng(0)
    images = [cv2.resize(rng.integers(0, 256, (6, 10, 3), dtype=np.uint8), (160, 96)) for _ in range(2)]
    paths = []
    for tag, seed in (("a", 1), ("b", 2)):
        model = randomize_(build_model(spec.name), seed).eval()
        with torch.no_grad():  # spread a random model's predictions over all classes (see test_validate.balanced)
            model.decoder[-1].bias -= model(torch.from_numpy(make_batch(images, (64, 128), spec.normalization))).mean((0, 2, 3))
        ckpt = save_checkpoint(tmp / f"{tag}.pth", model.state_dict())
        info = DeployInfo.from_spec(spec, input_size=(64, 128), checkpoint_sha256=sha256_file(ckpt))
        paths += [ckpt, export_onnx(model, info, tmp / f"{tag}.onnx")]
        if tag == "a":
            reference = TorchBackend(model, info.with_(output="logits"))
            for i, img in enumerate(images):
                for folder, array in (("test", img), ("testannot", predict_whole(reference, img, img.shape[:2]))):
                    (tmp / "data" / folder).mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(tmp / "data" / folder / f"{i}.png"), array)
    return tmp / "data", paths[0], paths[1], paths[3]


# --- issue 14.3 / 14.4: `pspnet-trt engine` checks what it built ---------------------------------------------
# TensorRT cannot run here. build_engine is the one TensorRT call of `make_engine`; these tests replace it by a
# function that hands back an ONNX file, which then stands in as "the engine" (opened by ONNX Runtime). What is
# tested is everything around the build: which reference, which images, which threshold, the exit code, the record.

def fake_build(stand_in=None):
    """build_engine(onnx, out, cfg) -> the ONNX just exported (or ``stand_in``), as if it were the engine."""
    def build(onnx, out, cfg):
        return Path(stand_in or onnx)
    return build


def test_engine_without_data_checks_labels_agreement_on_sample_images(cli_records, tmp_path, monkeypatch, capsys):
    from pspnet_trt.engine import make_engine
    from pspnet_trt.records import read_record
    from pspnet_trt.trt import build as trt_build
    from pspnet_trt.trt import plan
    from pspnet_trt.trt.build import BuildConfig

    root, ckpt_a, onnx_a, onnx_b = cli_records
    monkeypatch.setattr(trt_build, "build_engine", fake_build())
    monkeypatch.setattr(plan, "engine_plan", lambda: (None, "uint8"))  # "TensorRT and a GPU are here"
    assert make_engine("r18_os8_camvid", BuildConfig(precision="fp32"), checkpoint=ckpt_a, input_size="64x128",
                       validate_images=3, out_dir=tmp_path / "e", device="cpu") == 0
    built = tmp_path / "e" / "r18_os8_camvid_64x128_fp32.onnx"
    record = read_record(built)
    assert record["kind"] == "agreement" and record["passed"] is True and record["images"] == 3
    assert record["agreement"] > 99.9 and record["threshold"] == 99.9 and record["invalid_pixels"] == 0
    assert Path(record["images_dir"]).name == "samples" and record["artifact_sha256"]
    # an artifact from other weights is below the threshold: exit 1, and the record says FAIL
    monkeypatch.setattr(trt_build, "build_engine", fake_build(onnx_b))
    images = tmp_path / "imgs"
    images.mkdir()
    for p in sorted((Path(__file__).resolve().parents[1] / "samples" / "camvid" / "train").glob("*.jpg"))[:2]:
        (images / p.name).write_bytes(p.read_bytes())
    assert make_engine("r18_os8_camvid", BuildConfig(precision="fp16"), checkpoint=ckpt_a, input_size="64x128",
                       images_dir=images, out_dir=tmp_path / "e", device="cpu") == 1
    record = read_record(onnx_b)
    assert record["passed"] is False and record["images"] == 2
    assert record["threshold"] == 99.9  # by the artifact's own precision (b.onnx is FP32), not the build's flag
    assert record["agreement"] < 90


def test_engine_quick_validation_compares_like_with_like(cli_records, tmp_path, monkeypatch):
    """A labels engine (argmax at the input size, then nearest) is compared with a labels reference, as
    validate_artifacts does: the same weights agree on every pixel. A logits reference (bilinear to the label
    size, then argmax) does not, which is the bias the old quick validation had."""
    from pspnet_trt.data import open_dataset
    from pspnet_trt.engine import make_engine
    from pspnet_trt.records import read_record
    from pspnet_trt.runtime.ort import OrtBackend
    from pspnet_trt.runtime.torch_backend import TorchBackend
    from pspnet_trt.trt import build as trt_build
    from pspnet_trt.trt import plan
    from pspnet_trt.trt.build import BuildConfig
    from pspnet_trt.validate import validate

    root, ckpt_a, onnx_a, _ = cli_records
    monkeypatch.setattr(trt_build, "build_engine", fake_build())
    monkeypatch.setattr(plan, "engine_plan", lambda: (None, "uint8"))  # "TensorRT and a GPU are here"
    assert make_engine("r18_os8_camvid", BuildConfig(precision="fp32"), checkpoint=ckpt_a, input_size="64x128",
                       data=root, out_dir=tmp_path / "e", device="cpu") == 0
    built = tmp_path / "e" / "r18_os8_camvid_64x128_fp32.onnx"
    report = json.loads((tmp_path / "e" / "r18_os8_camvid_64x128_fp32_validation" / "report.json").read_text())
    assert report["backends"][0]["output"] == "labels" and report["backends"][1]["agreement"] == 100.0
    assert read_record(built)["kind"] == "miou" and read_record(built)["passed"] is True
    # given a logits reference, validate still compares the labels artifact with PyTorch's labels (its own
    # reference, validate.reference_for): 100 %, although the logits row itself predicts otherwise
    ds = open_dataset("camvid", root, "test")
    logits_ref = TorchBackend.from_zoo("r18_os8_camvid", checkpoint=ckpt_a, device="cpu", input_size=(64, 128),
                                       output="logits")
    report = validate(logits_ref, [OrtBackend(built)], ds, progress=False)
    assert report.rows[1]["agreement"] == 100.0
    assert report.rows[0]["miou"] != report.rows[1]["miou"]  # the logits row: bilinear, then argmax


def test_engine_reference_runs_where_the_machine_can_and_files_follow_the_scheme(cli_records, tmp_path, monkeypatch):
    """make_engine's PyTorch reference was pinned to device "cuda" (issue 24.4): on a machine whose torch sees no
    GPU the check after the build stopped. Now device "auto"; and the file names are engine.artifact_name's."""
    from pspnet_trt.engine import artifact_name, make_engine
    from pspnet_trt.trt import build as trt_build
    from pspnet_trt.trt import plan
    from pspnet_trt.trt.build import BuildConfig

    root, ckpt_a, _, _ = cli_records
    built = []
    monkeypatch.setattr(trt_build, "build_engine", lambda onnx, out, cfg: built.append((Path(onnx), Path(out))) or Path(onnx))
    monkeypatch.setattr(plan, "engine_plan", lambda: (None, "uint8"))
    assert make_engine("r18_os8_camvid", BuildConfig(precision="fp32"), checkpoint=ckpt_a, input_size="64x128",
                       validate_images=2, out_dir=tmp_path / "e") == 0  # no device: auto
    ((onnx, engine),) = built
    assert onnx == tmp_path / "e" / artifact_name("r18_os8_camvid", "fp32", (64, 128)) == tmp_path / "e" / \
        "r18_os8_camvid_64x128_fp32.onnx"
    assert engine.name == artifact_name("r18_os8_camvid", "fp32", (64, 128), suffix=".engine")


# --- issue 25.10: partial validations ----------------------------------------------------------------------------

def test_a_limited_validation_is_partial_and_the_warning_stays(cli_records, tmp_path, capsys, caplog):
    """`validate --limit 4` wrote a plain "PASS" record, after which Segmenter.open stopped warning. A record under
    the minimum (50 images, or the whole split if smaller) is partial: exit 0, and the warning stays."""
    import logging
    import shutil

    from pspnet_trt.records import partial, read_record
    from pspnet_trt.runtime import Segmenter

    root, ckpt_a, onnx_a, _ = cli_records
    onnx = Path(shutil.copy(onnx_a, tmp_path / "a.onnx"))
    args = ["validate", "--model", "r18_os8_camvid", "--checkpoint", ckpt_a, "--data", root, "--onnx", onnx,
            "--report", tmp_path / "r"]
    assert cli(*args, "--limit", "1") == 0  # 1 of the 2 images of the split
    out = capsys.readouterr().out
    assert "PASS (partial: 1 of the 2" in out and "partial validation" in out
    record = read_record(onnx)
    assert record["images"] == 1 and record["split_images"] == 2 and record["partial"] is True and partial(record)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        Segmenter.open(onnx, device="cpu").close()
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "partial validation" in warning and "1 of the 2" in warning
    assert cli("info", onnx) == 0
    assert "PASS (partial" in capsys.readouterr().out
    assert cli(*args) == 0  # the whole split (2 images, fewer than 50): full
    record = read_record(onnx)
    assert record["images"] == 2 and record["partial"] is False
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        Segmenter.open(onnx, device="cpu").close()
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_partial_needs_fifty_images_of_a_larger_split():
    from pspnet_trt.records import FULL_VALIDATION_IMAGES, partial, summary

    assert FULL_VALIDATION_IMAGES == 50
    rec = {"kind": "miou", "passed": True, "split": "test"}
    assert partial({**rec, "images": 49, "split_images": 233}) and not partial({**rec, "images": 50, "split_images": 233})
    assert not partial({**rec, "images": 6, "split_images": 6}) and partial({**rec, "images": 5, "split_images": 6})
    assert partial({**rec, "images": 20})  # split size unknown (older record): the minimum applies
    assert not partial({"kind": "agreement", "passed": True, "images": 3})  # warned about as agreement-only
    assert summary({**rec, "images": 4, "split_images": 233}).startswith("PASS (partial: 4 of the 233 test images")


def test_make_validate_takes_a_limit():
    from test_calibration_list import dry_run, option

    (line,) = [w for w in dry_run("validate", DATA="/data/camvid", ONNX="a.onnx", LIMIT="4") if "validate" in w]
    assert option(line, "--limit") == "4" and option(line, "--onnx") == "a.onnx"
    (line,) = [w for w in dry_run("validate", DATA="/data/camvid") if "validate" in w]
    assert "--limit" not in line


def test_iou_plot_marks_a_class_absent_from_the_images_na():
    """A class absent from both labels and predictions has no IoU: the plot left a blank gap (as if the bar were
    missing, or 0 %); it now says n/a there, for that backend only."""
    from pspnet_trt.validate.core import ValidationReport
    from pspnet_trt.validate.report import iou_figure

    names = ("sky", "road", "boat")
    rows = [{"backend": "pytorch", "miou": 50.0, "iou": {"sky": 0.5, "road": 0.5, "boat": None}},
            {"backend": "onnx", "miou": 40.0, "iou": {"sky": 0.4, "road": None, "boat": None}}]
    fig = iou_figure(ValidationReport(rows, 0.5, 3, "whole", names, 1.0, {"split_images": 3, "split": "test"}))
    ax = fig.axes[0]
    marks = sorted((round(t.get_position()[0], 3), t.get_text()) for t in ax.texts)
    width = 0.8 / 2
    expected = sorted((round(x + i * width - 0.4 + width / 2, 3), "n/a")
                      for x, i in ((2, 0), (1, 1), (2, 1)))  # boat for both, road for the artifact
    assert marks == expected
    import matplotlib.pyplot as plt

    plt.close(fig)
