"""Real TensorRT: build the demo model's engine and compare it with ONNX Runtime. Needs TensorRT and an NVIDIA GPU."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


def _gpu_reason():
    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt is not installed (CPU-only machine): engine build/run not verified here"
    try:
        from pspnet_trt.runtime.cuda import device_info

        device_info()
    except Exception as e:  # no driver, no GPU, no cuda-python
        return f"no usable CUDA GPU: {e}"
    return None


REASON = _gpu_reason()


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_matches_onnxruntime(tmp_path, tiny_model, tiny_info, precision):
    from pspnet_trt.export import export_onnx
    from pspnet_trt.runtime.ort import OrtBackend
    from pspnet_trt.runtime.tensorrt import TensorRTBackend
    from pspnet_trt.trt import BuildConfig, build_engine

    onnx = export_onnx(tiny_model, tiny_info, tmp_path / "m.onnx", precision=precision)
    engine = build_engine(onnx, tmp_path / "m.engine", BuildConfig(precision=precision, timing_cache=None))
    x = np.random.default_rng(0).standard_normal((1, 3, *tiny_info.input_size)).astype(np.float32)
    ours, ref = TensorRTBackend(engine).run(x), OrtBackend(onnx).run(x)
    assert (ours["labels"] == ref["labels"]).mean() > 0.999


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_engine_runtime_contracts_on_a_real_gpu(tmp_path, tiny_model, tiny_info):
    """Issue 14 items 6, 7, 9, 10 on a real engine: manifest pairs with the engine, cuda:0 explicit, uint8 labels,
    a batch the static engine was not built for is refused."""
    import hashlib
    import json

    from pspnet_trt.errors import UserError
    from pspnet_trt.export import export_onnx
    from pspnet_trt.runtime import Segmenter
    from pspnet_trt.runtime.tensorrt import TensorRTBackend
    from pspnet_trt.trt import BuildConfig, build_engine

    onnx = export_onnx(tiny_model, tiny_info, tmp_path / "m.onnx")
    engine = build_engine(onnx, tmp_path / "m.engine", BuildConfig(precision="fp32", timing_cache=None))
    record = json.loads((tmp_path / "m.engine.json").read_text())
    assert record["engine_sha256"] == hashlib.sha256(engine.read_bytes()).hexdigest()
    with Segmenter.open(engine) as seg:  # device="auto": CUDA
        labels = seg.predict(np.zeros((100, 150, 3), np.uint8))
        assert labels.dtype == np.uint8 and labels.shape == (100, 150)
    backend = TensorRTBackend(engine, device="cuda:0")
    bufs = backend.device_buffers()
    with pytest.raises(UserError, match="static batch of 1, got 2"):
        backend.infer_device(bufs.device["images"], {n: bufs.device[n] for n in backend.outputs}, bufs.stream, 2)
    backend.close()


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_raw_frame_engine_resizes_as_cv2_and_matches_onnxruntime(tmp_path, tiny_model, tiny_info, precision):
    """A bgr8 engine (the in-graph OpenCV resize: batched MatMuls, int32 rounding) against its ONNX on ONNX
    Runtime, where the resize is bit-exact (tests/test_raw_frames.py): the same labels, frame in, labels out."""
    import cv2

    from pspnet_trt.export import export_onnx
    from pspnet_trt.runtime import Segmenter
    from pspnet_trt.trt import BuildConfig, build_engine

    info = tiny_info.with_(output="labels", input_format="bgr8", frame_size=(96, 160))
    onnx = export_onnx(tiny_model, info, tmp_path / "raw.onnx", precision=precision)
    engine = build_engine(onnx, tmp_path / "raw.engine", BuildConfig(precision=precision, timing_cache=None))
    frame = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (96, 160, 3), dtype=np.uint8), (0, 0), 2.0)
    with Segmenter.open(engine) as trt_seg, Segmenter.open(onnx, device="cpu") as ort_seg:
        ours, ref = trt_seg.predict(frame), ort_seg.predict(frame)
    assert ours.shape == (96, 160) and ours.dtype == np.uint8
    assert (ours == ref).mean() > 0.999
