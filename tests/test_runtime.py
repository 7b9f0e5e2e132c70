"""Segmenter over ONNX Runtime and PyTorch: same interface, same answers, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from pspnet_trt.deploy import DeployInfo
from pspnet_trt.errors import UserError
from pspnet_trt.export import export_onnx
from pspnet_trt.runtime import Segmenter
from pspnet_trt.runtime.torch_backend import TorchBackend
from pspnet_trt.zoo import get_spec


def images(seed=0, sizes=((64, 128), (100, 150), (37, 300))):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def test_predict_returns_uint8_labels_in_each_image_size(tiny_onnx):
    with Segmenter.open(tiny_onnx) as seg:
        assert seg.num_classes == 11 and seg.input_size == (64, 128) and seg.class_names[0] == "sky"
        for im, labels in zip(images(), seg.predict_batch(images())):
            assert labels.dtype == np.uint8 and labels.shape == im.shape[:2]
            assert labels.max() < 11
        single = seg.predict(images()[1])
        assert np.array_equal(single, seg.predict_batch(images())[1])
        over = seg.overlay(images()[1], single, alpha=0.4)
        assert over.shape == images()[1].shape and over.dtype == np.uint8


def test_onnx_and_torch_segmenters_agree(tiny_model, tiny_onnx, tiny_info):
    onnx_seg = Segmenter.open(tiny_onnx)
    torch_seg = Segmenter(TorchBackend(tiny_model, tiny_info))
    for im in images(1):
        a, b = onnx_seg.predict(im), torch_seg.predict(im)
        assert (a == b).mean() >= 0.9999


def test_labels_only_artifact_with_static_batch_pads_the_last_chunk(tiny_model, tmp_path):
    info = DeployInfo.from_spec(get_spec("r18_os8_camvid"), input_size=(64, 128), output="labels", batch=2)
    path = export_onnx(tiny_model, info, tmp_path / "b2.onnx")
    seg = Segmenter.open(path)
    both = Segmenter(TorchBackend(tiny_model, info.with_(output="labels", batch=None)))
    out = seg.predict_batch(images()[:3])
    assert [o.shape for o in out] == [im.shape[:2] for im in images()[:3]]
    for a, b in zip(out, both.predict_batch(images()[:3])):
        assert (a == b).mean() >= 0.9999


@pytest.mark.parametrize("bad,err", [
    (np.zeros((10, 10), np.uint8), ValueError),
    (np.zeros((10, 10, 3), np.float32), ValueError),
    ("image.png", TypeError),
])
def test_bad_images_are_refused_clearly(tiny_onnx, bad, err):
    with pytest.raises(err, match="BGR uint8"):
        Segmenter.open(tiny_onnx).predict(bad)


def test_open_errors(tmp_path, tiny_model):
    with pytest.raises(UserError, match="does not exist"):
        Segmenter.open(tmp_path / "missing.onnx")
    with pytest.raises(UserError, match="not a zoo name"):
        Segmenter.open("r18_os8_kitti")
    import onnx

    from pspnet_trt.export import trace_onnx

    plain = trace_onnx(tiny_model, DeployInfo.from_spec(get_spec("r18_os8_camvid"), input_size=(64, 64)))
    onnx.save(plain, tmp_path / "plain.onnx")
    with pytest.raises(UserError, match="no pspnet-trt metadata"):
        Segmenter.open(tmp_path / "plain.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(UserError, match="junk.onnx is not an ONNX file"):
        Segmenter.open(tmp_path / "junk.onnx")


def test_infer_device_needs_tensorrt(tiny_onnx):
    with pytest.raises(UserError, match="TensorRT"):
        Segmenter.open(tiny_onnx).infer_device(0, 0, 0)


def test_zoo_name_opens_the_torch_backend_with_a_checkpoint(tiny_model, tmp_path):
    from pspnet_trt.checkpoints import save_checkpoint
    from pspnet_trt.models import build_model, randomize_

    model = randomize_(build_model("r18_os8_camvid"), 4)
    ckpt = save_checkpoint(tmp_path / "r18.pth", model.state_dict())
    seg = Segmenter.open("r18_os8_camvid", checkpoint=ckpt, input_size=(64, 96))
    assert seg.backend.name == "pytorch" and seg.info.checkpoint_sha256
    labels = seg.predict(images()[0])
    assert labels.shape == (64, 128)


def test_predict_cli_writes_pngs(tiny_onnx, tmp_path):
    import subprocess
    import sys

    import cv2

    cv2.imwrite(str(tmp_path / "in.png"), images()[1])
    r = subprocess.run([sys.executable, "-m", "pspnet_trt", "predict", "--model", str(tiny_onnx), "--out",
                        str(tmp_path / "out"), str(tmp_path / "in.png")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    labels = cv2.imread(str(tmp_path / "out" / "in_labels.png"), cv2.IMREAD_UNCHANGED)
    assert labels.shape == (100, 150) and (tmp_path / "out" / "in_overlay.png").is_file()
