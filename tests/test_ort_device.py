"""ONNX Runtime on CUDA without a working CUDA provider (issue 26, item 9): the message says what is missing and
how to get it, not "cannot load it; re-export it" (the file is fine).

This machine's onnxruntime is the CPU build; the provider list and the session are patched only where a case
needs a CUDA provider that is listed but does not load."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from pspnet_trt.errors import UserError

ort = pytest.importorskip("onnxruntime")


def _no_reexport(message: str) -> None:
    assert "re-export" not in message and "cannot load it" not in message, message
    assert "onnxruntime-gpu" in message and "pip install" in message and "--device cpu" in message, message


def test_cuda_asked_for_without_a_cuda_provider(tiny_onnx, monkeypatch):
    from pspnet_trt.runtime.ort import OrtBackend

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(UserError) as e:
        OrtBackend(tiny_onnx, device="cuda")
    assert "has no CUDA provider" in str(e.value) and "pip install onnxruntime-gpu" in str(e.value)
    _no_reexport(str(e.value))


def test_a_listed_cuda_provider_that_falls_back_to_the_cpu(tiny_onnx, monkeypatch, caplog):
    """onnxruntime-gpu without its CUDA libraries lists the provider, then runs on the CPU: refused for
    device='cuda', a warning for device='auto'. (The CPU build does the same with a listed CUDA provider.)"""
    from pspnet_trt.runtime.ort import OrtBackend

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(UserError) as e:
        OrtBackend(tiny_onnx, device="cuda:0")
    assert "could not load its CUDA provider" in str(e.value)
    _no_reexport(str(e.value))
    with caplog.at_level(logging.WARNING, logger="pspnet_trt"):
        backend = OrtBackend(tiny_onnx, device="auto")
    assert "could not load its CUDA provider" in caplog.text and "running on the CPU" in caplog.text
    h, w = backend.info.input_size
    assert backend.run(np.zeros((1, 3, h, w), np.float32))["labels"].shape == (1, h, w)


def test_a_cuda_provider_that_raises_on_load(tiny_onnx, tmp_path, monkeypatch):
    from pspnet_trt.runtime.ort import OrtBackend

    real = ort.InferenceSession

    def session(path, sess_options=None, providers=None):
        if any("CUDA" in str(p) for p in providers):
            raise RuntimeError("Failed to load library libonnxruntime_providers_cuda.so (test)")
        return real(path, sess_options=sess_options, providers=providers)

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", session)
    with pytest.raises(UserError) as e:
        OrtBackend(tiny_onnx, device="cuda")
    assert "could not load its CUDA provider (RuntimeError: Failed to load library" in str(e.value)
    _no_reexport(str(e.value))
    # a broken file on CUDA is still reported as the file's problem
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(tiny_onnx.read_bytes()[:1000])
    with pytest.raises(UserError) as e:
        OrtBackend(broken, device="cuda")
    assert "CUDA provider" not in str(e.value)
