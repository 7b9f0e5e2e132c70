"""`pspnet-trt deepstream`: the Gst-nvinfer config parses as a key file, uses documented keys only, and every
number equals the engine manifest's. (DeepStream itself cannot run here.)"""

from __future__ import annotations

import configparser
import subprocess
import sys

import numpy as np
import pytest

from pspnet_trt.errors import UserError
from pspnet_trt.serving.deepstream import NVINFER_KEYS, write_deepstream


def _engine(tmp_path, info, name="seg.engine"):
    """A stand-in engine file with a real manifest (what `pspnet-trt build` writes beside an engine)."""
    from pspnet_trt.trt.manifest import Manifest, write_manifest

    engine = tmp_path / name
    engine.write_bytes(b"not an engine: the config generator reads the manifest only")
    write_manifest(engine, Manifest(deploy=info.to_dict(), tensorrt_version="10.8.0", gpu={"name": "x"},
                                    precision=info.precision, input_name=info.input_name,
                                    input_shape=list(info.input_shape(info.batch or -1)),
                                    outputs=list(info.output_names), onnx="x.onnx", onnx_sha256="0",
                                    build_flags={"max_batch": 4}))
    return engine


def _parse(path):
    """GKeyFile syntax: [group], key=value, '#' comments, ';'-separated lists."""
    cp = configparser.ConfigParser(delimiters=("=",), comment_prefixes=("#",), interpolation=None)
    cp.optionxform = str  # keys are case-sensitive in GKeyFile
    cp.read(path)
    return cp


def test_config_keys_and_numbers_come_from_the_manifest(tiny_info, tmp_path):
    info = tiny_info.with_(output="logits", input_format="pixels", precision="fp16", batch=2)
    config, labels = write_deepstream(_engine(tmp_path, info), tmp_path / "ds")
    cp = _parse(config)
    assert cp.sections() == ["property"]
    p = cp["property"]
    assert set(p) <= set(NVINFER_KEYS), sorted(set(p) - set(NVINFER_KEYS))
    assert p["network-type"] == "2" and p["output-blob-names"] == "logits"
    assert int(p["num-detected-classes"]) == info.num_classes == 11
    assert [int(v) for v in p["infer-dims"].split(";")] == [3, *info.input_size]
    assert int(p["batch-size"]) == 2 and p["network-mode"] == "2"  # fp16
    assert p["model-color-format"] == "0"  # the model takes RGB
    assert float(p["net-scale-factor"]) == 1.0 and [float(v) for v in p["offsets"].split(";")] == [0, 0, 0]
    assert (tmp_path / "ds" / p["labelfile-path"]) == labels
    assert labels.read_text().splitlines() == list(info.class_names)
    assert p["model-engine-file"] == str((tmp_path / "seg.engine").resolve())


def test_dynamic_batch_engine_uses_the_built_max_batch(tiny_info, tmp_path):
    info = tiny_info.with_(output="logits", input_format="pixels", batch=None, precision="int8")
    p = _parse(write_deepstream(_engine(tmp_path, info), tmp_path / "ds")[0])["property"]
    assert p["batch-size"] == "4" and p["network-mode"] == "1"


@pytest.mark.parametrize("changes, needle", [
    ({"output": "logits"}, "--input-format pixels"),  # normalized input: nvinfer cannot normalise per channel
    ({"input_format": "pixels", "output": "labels"}, "needs class scores"),
])
def test_refuses_engines_nvinfer_cannot_feed(tiny_info, tmp_path, changes, needle):
    with pytest.raises(UserError, match=needle):
        write_deepstream(_engine(tmp_path, tiny_info.with_(**changes)), tmp_path / "ds")


def test_pixels_export_outputs_softmax_scores(tiny_model, tiny_info, tmp_path):
    """nvinfer's parser ignores scores <= -1: the pixels graph's scores are probabilities (sum 1, argmax kept)."""
    import onnxruntime as ort

    from pspnet_trt.deploy import read_onnx_info
    from pspnet_trt.export import export_onnx
    from pspnet_trt.preprocess import make_batch, pixels_batch

    pix = export_onnx(tiny_model, tiny_info.with_(input_format="pixels", output="logits"), tmp_path / "pix.onnx")
    ref = export_onnx(tiny_model, tiny_info.with_(output="logits"), tmp_path / "ref.onnx")
    image = np.random.default_rng(0).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    probs = ort.InferenceSession(str(pix)).run(None, {"images": pixels_batch([image], (64, 128), tiny_info.normalization)})[0]
    logits = ort.InferenceSession(str(ref)).run(None, {"images": make_batch([image], (64, 128), tiny_info.normalization)})[0]
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert probs.min() >= 0 and (probs.argmax(1) == logits.argmax(1)).mean() >= 0.9999
    assert read_onnx_info(pix).extra["scores"] == "softmax"


def test_cli(tiny_info, tmp_path):
    engine = _engine(tmp_path, tiny_info.with_(output="logits", input_format="pixels"))
    r = subprocess.run([sys.executable, "-m", "pspnet_trt", "deepstream", "--engine", str(engine), "--out",
                        str(tmp_path / "ds")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ds" / "config_infer_seg.txt").is_file()
    engine2 = _engine(tmp_path, tiny_info.with_(output="logits"), "norm.engine")
    r = subprocess.run([sys.executable, "-m", "pspnet_trt", "deepstream", "--engine", str(engine2), "--out",
                        str(tmp_path / "ds2")], capture_output=True, text=True)
    assert r.returncode == 2 and "--input-format pixels" in r.stderr
