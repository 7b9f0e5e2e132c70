"""`pspnet-trt deepstream`: the Gst-nvinfer config parses as a key file, uses documented keys only, and every
number equals the engine manifest's. (DeepStream itself cannot run here.)"""

from __future__ import annotations

import configparser
import re
import subprocess
import sys

import numpy as np
import pytest

from pspnet_trt.errors import UserError
from pspnet_trt.serving.deepstream import write_deepstream


def _int(low, values=None):
    return lambda v: re.fullmatch(r"-?\d+", v) is not None and int(v) >= low and (values is None or int(v) in values)


def _float(low, strict):
    def check(v):
        try:
            x = float(v)
        except ValueError:
            return False
        return x > low if strict else x >= low
    return check


def _list(item, n=None):
    return lambda v: all(item(x) for x in v.split(";")) and (n is None or len(v.split(";")) == n)


_STR = bool  # a non-empty string (pathname, name)
_BOOL = re.compile(r"0|1|true|false").fullmatch

# Gst-nvinfer's [property] keys and their documented type and range, written out here from NVIDIA's documentation
# (not from the code under test): "Gst-nvinfer File Configuration Specifications", the table of the [property]
# group's supported keys (DeepStream Plugin Manual 4.0, Table 2; the same rows open the table "Gst-nvinfer
# Property Group Supported Keys" of the DeepStream Developer Guide,
# https://docs.nvidia.com/metropolis/deepstream/dev-guide/text/DS_plugin_gst-nvinfer.html), plus gpu-id,
# infer-dims and segmentation-output-order, which later releases added to that table (and to the
# CONFIG_GROUP_INFER_* macros of gstnvinfer_property_parser.h in the DeepStream SDK API reference).
NVINFER_DOCUMENTED = {
    "num-detected-classes": _int(1), "net-scale-factor": _float(0.0, strict=True), "model-file": _STR,
    "proto-file": _STR, "int8-calib-file": _STR, "batch-size": _int(1), "model-engine-file": _STR, "uff-file": _STR,
    "onnx-file": _STR, "enable-dbscan": _BOOL, "labelfile-path": _STR, "mean-file": _STR, "gie-unique-id": _int(1),
    "operate-on-gie-id": _int(1), "operate-on-class-ids": _list(_int(0)), "interval": _int(0),
    "input-object-min-width": _int(0), "input-object-min-height": _int(0), "input-object-max-width": _int(0),
    "input-object-max-height": _int(0), "uff-input-dims": _list(_int(0), 4),
    "network-mode": _int(0, {0, 1, 2}),  # 0: FP32, 1: INT8, 2: FP16
    "offsets": _list(_float(0.0, strict=False), 3),  # one mean per colour component, all >= 0
    "output-blob-names": _list(_STR), "parse-bbox-func-name": _STR, "custom-lib-path": _STR,
    "model-color-format": _int(0, {0, 1, 2}),  # 0: RGB, 1: BGR, 2: GRAY
    "classifier-async-mode": _BOOL, "process-mode": _int(1, {1, 2}),  # 1: primary, 2: secondary
    "classifier-threshold": _float(0.0, strict=False), "uff-input-blob-name": _STR,
    "secondary-reinfer-interval": _int(0), "output-tensor-meta": _BOOL, "enable-dla": _BOOL, "use-dla-core": _int(0),
    "network-type": _int(0, {0, 1, 2, 3, 100}),  # 0: detector, 1: classifier, 2: segmentation, 3: instance seg.
    "maintain-aspect-ratio": _BOOL, "parse-classifier-func-name": _STR, "custom-network-config": _STR,
    "tlt-encoded-model": _STR, "tlt-model-key": _STR, "segmentation-threshold": _float(0.0, strict=False),
    # added later to the same table
    "gpu-id": _int(0), "infer-dims": _list(_int(1), 3),  # channel;height;width
    "segmentation-output-order": _int(0, {0, 1}),  # 0: NCHW, 1: NHWC
}


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
    assert set(p) <= set(NVINFER_DOCUMENTED), sorted(set(p) - set(NVINFER_DOCUMENTED))
    assert not [(k, v) for k, v in p.items() if not NVINFER_DOCUMENTED[k](v)]  # each value in its documented range
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

    from pspnet_trt.artifacts import read_onnx_info
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
