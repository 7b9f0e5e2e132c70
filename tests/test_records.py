"""Artifact records (issue 14): unreadable metadata gives one line and exit 2; validation verdicts are written
into each artifact's record, `pspnet-trt info` prints them, and Segmenter.open warns about unvalidated artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pspnet_trt.deploy import DeployInfo, read_onnx_info
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
