"""TensorRTBackend leaves the caller's current GPU alone (issue 26, item 10).

CUDA's current device is per thread; an app with its own CUDA work on GPU 0 that opens an engine on
cuda:1 must find GPU 0 current again after every backend call. Driven by the recording doubles of
``cuda-python``'s runtime and of ``tensorrt`` in tests/test_runtime_contracts.py: this checks which
device our calls make current, not that an engine runs (tests/test_trt_gpu.py needs a GPU for that).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from test_runtime_contracts import FakeCudart, fake_tensorrt, write_engine

from pspnet_trt.errors import UserError


class RecordingCudart(FakeCudart):
    """Also records copies and synchronisations, so every event can be placed on a device."""

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):  # noqa: N802
        self.calls.append(("memcpy", kind))
        return super().cudaMemcpyAsync(dst, src, n, kind, stream)

    def cudaStreamSynchronize(self, s):  # noqa: N802
        self.calls.append(("sync", s))
        return super().cudaStreamSynchronize(s)

    def cudaFree(self, ptr):  # noqa: N802
        self.calls.append(("free", ptr))
        return super().cudaFree(ptr)

    def cudaStreamDestroy(self, s):  # noqa: N802
        self.calls.append(("stream_destroy", s))
        return super().cudaStreamDestroy(s)


def on_device(calls, start):
    """(event name, the device current when it happened), replaying the recorded set_device calls from ``start``."""
    current, placed = start, []
    for c in calls:
        if c[0] == "set_device":
            current = c[1]
        else:
            placed.append((c[0], current))
    return placed


@pytest.fixture
def gpus(monkeypatch, tiny_info):
    """Two fake GPUs, the caller's thread on GPU 0; an engine built on GPU 1 (compute capability 8.9)."""
    from pspnet_trt.runtime import cuda

    def make(tmp_path):
        info = tiny_info.with_(output="labels", precision="fp16", batch=None)
        h, w = info.input_size
        io = {"images": (True, (-1, 3, h, w), "FLOAT"), "labels": (False, (-1, h, w), "UINT8")}
        calls = []
        cudart = RecordingCudart(calls)
        monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(calls, io, cudart.memory, 3))
        monkeypatch.setattr(cuda, "runtime", lambda: cudart)
        return info, write_engine(tmp_path, info, gpu=("GPU 1", "8.9"), max_batch=2), calls, cudart

    return make


def test_every_backend_call_gives_the_callers_device_back(gpus, tmp_path):
    from pspnet_trt.runtime.tensorrt import TensorRTBackend

    info, engine, calls, cudart = gpus(tmp_path)
    backend = TensorRTBackend(engine, device="cuda:1")
    assert cudart.current == 0, "opening the engine left the caller's thread on GPU 1"
    assert ("deserialize", 1) in on_device(calls, 0)

    steps = {
        "device_buffers": lambda: backend.device_buffers(2),
        "run": lambda: backend.run(np.zeros((2, 3, *info.input_size), np.float32)),
        "infer_device": lambda: backend.infer_device(1, {"labels": 2}, stream=5, batch=1),
        "run (new batch: buffers freed and made again)": lambda: backend.run(np.zeros((1, 3, *info.input_size),
                                                                                      np.float32)),
        "close": backend.close,
    }
    for step, call in steps.items():
        calls.clear()
        call()
        assert cudart.current == 0, f"{step} left the caller's thread on GPU {cudart.current}"
        placed = on_device(calls, 0)
        # the work itself ran on the engine's GPU
        assert placed and all(device == 1 for event, device in placed), (step, placed)
    assert backend.run(np.zeros((1, 3, *info.input_size), np.float32))["labels"].max() == 3


def test_no_device_switch_when_the_engines_gpu_is_current(gpus, tmp_path):
    from pspnet_trt.runtime.tensorrt import TensorRTBackend

    info, engine, calls, cudart = gpus(tmp_path)
    cudart.current = 1
    backend = TensorRTBackend(engine, device="cuda:1")
    backend.run(np.zeros((1, 3, *info.input_size), np.float32))
    assert not [c for c in calls if c[0] == "set_device"] and cudart.current == 1


def test_an_invisible_gpu_is_refused_before_any_switch(gpus, tmp_path):
    from pspnet_trt.runtime.tensorrt import TensorRTBackend

    _, engine, calls, cudart = gpus(tmp_path)
    with pytest.raises(UserError, match="cuda:5 .* 2 CUDA GPUs are visible"):
        TensorRTBackend(engine, device="cuda:5")
    assert cudart.current == 0 and not [c for c in calls if c[0] == "set_device"]


def test_a_failure_inside_gives_the_device_back_too(gpus, tmp_path):
    """The manifest names GPU 1 (8.9); opening it as cuda:0 (8.6) fails inside the switch: GPU 0 stays current,
    and a caller on GPU 1 opening it for cuda:0 gets GPU 1 back after the error."""
    from pspnet_trt.runtime.tensorrt import TensorRTBackend

    _, engine, calls, cudart = gpus(tmp_path)
    cudart.current = 1
    with pytest.raises(UserError):
        TensorRTBackend(engine, device="cuda:0")
    assert cudart.current == 1 and ("set_device", 0) in calls
