"""Runtime contracts (issue 14, items 6-10): batch, device index, default device, uint8 labels, engine/manifest pair.

The TensorRT backend is driven here through a recording double of ``tensorrt`` and of ``cuda-python``'s
runtime (device "pointers" are host memory, so the numpy path's copies really move bytes). It checks how
our code maps to API calls and which inputs it refuses; it is no evidence that an engine runs (that is
tests/test_trt_gpu.py, which needs a GPU).
"""

from __future__ import annotations

import ctypes
import enum
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from pspnet_trt.errors import UserError

# -- recording doubles -----------------------------------------------------------------------------


class FakeCudart:
    """``cuda.bindings.runtime`` for 2 GPUs: device 0 is compute capability 8.6, device 1 is 8.9."""

    GPUS = (("GPU 0", 8, 6), ("GPU 1", 8, 9))

    def __init__(self, calls):
        self.calls = calls
        self.current = 0
        self.memory = {}
        self.cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)

    def cudaGetDeviceCount(self):
        return 0, len(self.GPUS)

    def cudaGetDevice(self):
        return 0, self.current

    def cudaSetDevice(self, i):
        if not 0 <= i < len(self.GPUS):
            return (101,)
        self.calls.append(("set_device", i))
        self.current = i
        return (0,)

    def cudaGetDeviceProperties(self, i):
        self.calls.append(("properties", i))
        name, major, minor = self.GPUS[i]
        return 0, types.SimpleNamespace(name=name.encode(), major=major, minor=minor)

    def cudaMalloc(self, n):
        buf = ctypes.create_string_buffer(n)
        self.memory[ctypes.addressof(buf)] = buf
        self.calls.append(("malloc", self.current, n))
        return 0, ctypes.addressof(buf)

    def cudaFree(self, ptr):
        self.memory.pop(ptr)
        return (0,)

    def cudaStreamCreate(self):
        return 0, 7

    def cudaStreamDestroy(self, s):
        return (0,)

    def cudaStreamSynchronize(self, s):
        return (0,)

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):
        ctypes.memmove(dst, src, n)
        return (0,)


def fake_tensorrt(calls, io, memory, labels_value=None):
    """``tensorrt`` whose engine has the I/O ``io`` ({name: (is_input, shape, dtype)}) and writes
    ``labels_value`` (an int) to every labels pixel when executed."""
    m = types.ModuleType("tensorrt")
    m.__version__ = "10.3.0"
    m.TensorIOMode = enum.Enum("TensorIOMode", "INPUT OUTPUT")
    m.DataType = enum.Enum("DataType", "FLOAT HALF INT32 UINT8")
    sizes = {"FLOAT": 4, "HALF": 2, "INT32": 4, "UINT8": 1}
    names = list(io)

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class Context:
        def __init__(self):
            self.shapes = {n: io[n][1] for n in names}
            self.addresses = {}

        def set_input_shape(self, name, shape):
            calls.append(("set_input_shape", name, tuple(shape)))
            self.shapes[name] = tuple(shape)
            for n in names:
                if not io[n][0]:
                    self.shapes[n] = (shape[0], *io[n][1][1:])
            return 1 <= shape[0] <= 4

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr
            return True

        def execute_async_v3(self, stream):
            calls.append(("execute", dict(self.addresses), stream))
            buf = memory.get(self.addresses["labels"])  # only memory the double allocated is written
            if buf is not None:
                shape = self.shapes["labels"]
                n = int(np.prod(shape)) * sizes[io["labels"][2]]
                assert n <= len(buf), "the engine would write past the output buffer"
                out = np.frombuffer((ctypes.c_char * n).from_address(self.addresses["labels"]),
                                    np.int32 if io["labels"][2] == "INT32" else np.uint8).reshape(shape)
                out[...] = labels_value
            return True

    class Engine:
        num_io_tensors = len(names)

        def get_tensor_name(self, i):
            return names[i]

        def get_tensor_shape(self, n):
            return io[n][1]

        def get_tensor_mode(self, n):
            return m.TensorIOMode.INPUT if io[n][0] else m.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, n):
            return m.DataType[io[n][2]]

        def create_execution_context(self):
            return Context()

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            calls.append(("deserialize", len(data)))
            return Engine()

    m.Logger, m.Runtime = Logger, Runtime
    return m


def write_engine(tmp_path: Path, info, gpu=("GPU 0", "8.6"), max_batch=1) -> Path:
    from pspnet_trt.trt.build import save_engine
    from pspnet_trt.trt.manifest import Manifest

    manifest = Manifest(deploy=info.to_dict(), tensorrt_version="10.3.0",
                        gpu={"name": gpu[0], "compute_capability": gpu[1]}, precision=info.precision,
                        input_name="images", input_shape=[info.batch or -1, 3, *info.input_size],
                        outputs=list(info.output_names), onnx="m.onnx", onnx_sha256="0" * 64,
                        build_flags={"max_batch": max_batch})
    return save_engine(b"serialized engine bytes", tmp_path / "m.engine", manifest)


@pytest.fixture
def trt_double(monkeypatch, tiny_info):
    """Install the doubles; returns ``make(info, labels_dtype, labels_value)`` -> (calls, cudart)."""
    from pspnet_trt.runtime import cuda

    def make(info, labels_dtype="UINT8", labels_value=3):
        calls = []
        b = info.batch or -1
        h, w = info.input_size
        io = {"images": (True, (b, 3, h, w), "FLOAT"), "labels": (False, (b, h, w), labels_dtype)}
        cudart = FakeCudart(calls)
        monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(calls, io, cudart.memory, labels_value))
        monkeypatch.setattr(cuda, "runtime", lambda: cudart)
        return calls, cudart

    return make


@pytest.fixture
def labels_info(tiny_info):
    return tiny_info.with_(output="labels", precision="fp16")


# -- item 6: a static-batch engine runs only its batch -----------------------------------------------


def test_static_batch_engine_refuses_any_other_batch(trt_double, labels_info, tmp_path):
    from pspnet_trt.runtime.tensorrt import TensorRTBackend

    info = labels_info.with_(batch=4)
    calls, _ = trt_double(info)
    backend = TensorRTBackend(write_engine(tmp_path, info), device="cuda")
    h, w = info.input_size
    with pytest.raises(UserError, match="static batch of 4, got 2"):
        backend.infer_device(1, {"labels": 2}, stream=0, batch=2)
    # run_dlpack with 2-image tensors would let the engine read and write 4 images' worth of memory
    with pytest.raises(UserError, match="static batch of 4, got 2"):
        backend.run_dlpack(np.zeros((2, 3, h, w), np.float32), {"labels": np.zeros((2, h, w), np.uint8)})
    assert not [c for c in calls if c[0] == "execute"]
    backend.infer_device(1, {"labels": 2}, stream=0)  # no batch given: the engine's own
    backend.infer_device(1, {"labels": 2}, stream=0, batch=4)
    assert len([c for c in calls if c[0] == "execute"]) == 2


def test_dynamic_batch_engine_runs_one_to_max_batch(trt_double, labels_info, tmp_path):
    from pspnet_trt.runtime.tensorrt import TensorRTBackend

    info = labels_info.with_(batch=None)
    calls, _ = trt_double(info)
    backend = TensorRTBackend(write_engine(tmp_path, info, max_batch=4), device="cuda")
    backend.infer_device(1, {"labels": 2}, stream=0, batch=3)
    assert ("set_input_shape", "images", (3, 3, *info.input_size)) in calls
    for bad in (0, 5):
        with pytest.raises(UserError, match=rf"batch {bad} is outside this engine's range 1\.\.4"):
            backend.infer_device(1, {"labels": 2}, stream=0, batch=bad)


def test_batch_rule():
    from pspnet_trt.runtime.tensorrt import engine_batch

    assert engine_batch(None, static=4, max_batch=None) == 4
    assert engine_batch(4, static=4, max_batch=None) == 4
    assert engine_batch(None, static=None, max_batch=8) == 1
    assert engine_batch(8, static=None, max_batch=8) == 8
    assert engine_batch(3, static=None, max_batch=None) == 3  # manifest without max_batch: TensorRT's profile decides
    with pytest.raises(UserError, match="static batch of 1, got 2.*--dynamic-batch"):
        engine_batch(2, static=1, max_batch=None)
    with pytest.raises(UserError, match="rebuild with --max-batch 9"):
        engine_batch(9, static=None, max_batch=8)


# -- item 7: device="cuda:N" -------------------------------------------------------------------------


def test_tensorrt_backend_checks_and_runs_on_the_device_asked_for(trt_double, labels_info, tmp_path):
    from pspnet_trt.runtime.tensorrt import TensorRTBackend

    calls, cudart = trt_double(labels_info)
    engine = write_engine(tmp_path, labels_info, gpu=("GPU 1", "8.9"))  # built on device 1 (8.9); device 0 is 8.6
    backend = TensorRTBackend(engine, device="cuda:1")
    first = [c for c in calls if c[0] in ("set_device", "properties", "deserialize")]
    assert first[:3] == [("set_device", 1), ("properties", 1), ("deserialize", 23)]
    cudart.current = 0  # another thread / library switched devices: the backend switches back before it works
    backend.run(np.zeros((1, 3, *labels_info.input_size), np.float32))
    assert {c[1] for c in calls if c[0] == "malloc"} == {1}
    assert cudart.current == 0  # and gives the caller's device back (issue 26 item 10: tests/test_trt_device.py)
    with pytest.raises(UserError, match="cuda:5 .* 2 CUDA GPUs are visible"):
        TensorRTBackend(engine, device="cuda:5")


def test_device_strings():
    from pspnet_trt.runtime.device import Device, parse_device, resolve_device

    assert parse_device("auto") is None
    assert parse_device("cpu") == Device("cpu") and str(parse_device("cpu")) == "cpu"
    assert parse_device("cuda") == Device("cuda", 0) and str(parse_device("cuda")) == "cuda:0"
    assert parse_device("CUDA:3") == Device("cuda", 3)
    for bad in ("gpu", "cuda:", "cuda:-1", "cuda:x", "cuda1"):
        with pytest.raises(UserError, match="auto, cpu, cuda or cuda:N"):
            parse_device(bad)
    assert resolve_device("auto", lambda: True) == Device("cuda", 0)
    assert resolve_device("auto", lambda: False) == Device("cpu")
    assert resolve_device("cuda:2", lambda: False) == Device("cuda", 2)


def test_onnxruntime_gets_the_cuda_device_index():
    from pspnet_trt.runtime.ort import _providers

    gpu = types.SimpleNamespace(get_available_providers=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    cpu = types.SimpleNamespace(get_available_providers=lambda: ["CPUExecutionProvider"])
    assert _providers(gpu, "cuda:1") == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert _providers(gpu, "auto") == [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
    assert _providers(gpu, "cpu") == ["CPUExecutionProvider"]
    assert _providers(cpu, "auto") == ["CPUExecutionProvider"]
    with pytest.raises(UserError, match="no CUDA provider.*onnxruntime-gpu"):
        _providers(cpu, "cuda:1")


def test_torch_backend_resolves_auto_and_the_index(tiny_model, tiny_info):
    torch = pytest.importorskip("torch")
    from pspnet_trt.runtime.torch_backend import TorchBackend

    expected = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert str(TorchBackend(tiny_model, tiny_info, device="auto").device) == expected
    beyond = torch.cuda.device_count()
    with pytest.raises(UserError, match=f"cuda:{beyond} asked for, but this torch sees {beyond} CUDA GPU"):
        TorchBackend(tiny_model, tiny_info, device=f"cuda:{beyond}")


# -- item 8: device="auto" is the default ----------------------------------------------------------


def test_segmenter_open_of_an_engine_defaults_to_the_gpu(tmp_path, labels_info):
    if "tensorrt" in sys.modules:
        pytest.skip("tensorrt is installed here")
    from pspnet_trt.runtime import Segmenter

    engine = write_engine(tmp_path, labels_info)
    with pytest.raises(UserError, match="tensorrt is needed"):  # not "TensorRT engines run on an NVIDIA GPU"
        Segmenter.open(engine)


def test_segmenter_open_of_an_onnx_defaults_to_auto(tiny_onnx):
    from pspnet_trt.runtime import Segmenter

    with Segmenter.open(tiny_onnx) as seg:  # onnxruntime (CPU build) here: the CPU provider
        assert seg.backend.session.get_providers() == ["CPUExecutionProvider"]


@pytest.mark.parametrize("argv", [
    ["predict", "--model", "m.engine", "--out", "o", "a.png"],
    ["validate", "--model", "r18_os8_camvid", "--data", "d", "--engine", "m.engine", "--report", "r"],
])
def test_cli_device_defaults_to_auto(argv):
    from pspnet_trt.cli import build_parser

    assert build_parser().parse_args(argv).device == "auto"


def test_bench_script_device_defaults_to_auto():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_script", Path(__file__).parents[1] / "benchmarks" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.parser().parse_args(["--model", "r18_os8_camvid"]).device == "auto"


# -- item 9: uint8 labels from every backend -------------------------------------------------------


def test_tensorrt_int32_labels_come_back_as_uint8(trt_double, labels_info, tmp_path):
    from pspnet_trt.runtime import Segmenter
    from pspnet_trt.runtime.tensorrt import TensorRTBackend

    trt_double(labels_info, labels_dtype="INT32", labels_value=7)  # TensorRT 8.5/8.6 engines: int32 labels
    backend = TensorRTBackend(write_engine(tmp_path, labels_info), device="cuda")
    out = backend.run(np.zeros((1, 3, *labels_info.input_size), np.float32))
    assert out["labels"].dtype == np.uint8 and (out["labels"] == 7).all()
    labels = Segmenter(backend).predict(np.zeros((100, 150, 3), np.uint8))
    assert labels.dtype == np.uint8 and labels.shape == (100, 150) and (labels == 7).all()


def test_segmenter_returns_uint8_whatever_the_backend_gives(labels_info):
    from pspnet_trt.runtime import Backend, Segmenter

    class Int32Labels(Backend):
        name = "int32"
        info = labels_info

        def run(self, batch):
            labels = np.full((batch.shape[0], *self.info.input_size), 5, np.int32)
            labels[:, 0, 0] = 300  # out of uint8's range: must not wrap to a valid class (300 % 256 = 44)
            return {"labels": labels}

    labels = Segmenter(Int32Labels()).predict(np.zeros(tuple(labels_info.input_size) + (3,), np.uint8))
    assert labels.dtype == np.uint8 and labels[0, 0] == 255 and (labels.ravel()[1:] == 5).all()


def test_uint8_label_conversion():
    from pspnet_trt.runtime.backend import as_uint8_labels

    same = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert as_uint8_labels(same) is same
    got = as_uint8_labels(np.array([[0, 10, 255, 256, -1, 70000]], np.int64))
    assert got.dtype == np.uint8 and got.tolist() == [[0, 10, 255, 255, 255, 255]]


# -- item 10: engine and manifest belong together; files get the normal mode -------------------------


def test_manifest_records_the_engine_and_loading_refuses_another(tmp_path, labels_info):
    import json

    from pspnet_trt.runtime import Segmenter
    from pspnet_trt.trt.manifest import check_engine_file, read_manifest

    engine = write_engine(tmp_path, labels_info)
    record = json.loads((tmp_path / "m.engine.json").read_text())
    data = engine.read_bytes()
    assert record["engine_bytes"] == len(data) == 23
    assert record["engine_sha256"] == __import__("hashlib").sha256(data).hexdigest()
    check_engine_file(read_manifest(engine), data, engine)
    engine.write_bytes(b"a newer engine, its manifest never written")  # a crash between the two replaces
    with pytest.raises(UserError, match=r"m\.engine does not match its manifest .*m\.engine\.json.*rebuild"):
        Segmenter.open(engine, device="cuda")  # before TensorRT is touched: also without TensorRT
    same_size = b"x" * 23  # same size, other bytes: the hash decides
    with pytest.raises(UserError, match="does not match its manifest"):
        check_engine_file(read_manifest(engine), same_size, engine)


def test_a_manifest_without_the_engine_hash_is_accepted_with_a_warning(tmp_path, labels_info, caplog):
    from pspnet_trt.trt.manifest import Manifest, check_engine_file, read_manifest, write_manifest

    engine = tmp_path / "old.engine"
    engine.write_bytes(b"engine of an older pspnet-trt")
    write_manifest(engine, Manifest(deploy=labels_info.to_dict(), tensorrt_version="10.3.0", gpu={}, precision="fp16",
                                    input_name="images", input_shape=[1, 3, 64, 128], outputs=["labels"],
                                    onnx="m.onnx", onnx_sha256=""))
    check_engine_file(read_manifest(engine), engine.read_bytes(), engine)
    assert "records no engine sha256" in caplog.text


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_atomic_writes_get_the_normal_file_mode(tmp_path, umask, mode):
    from pspnet_trt.files import atomic_open, atomic_path, write_json

    old = os.umask(umask)
    try:
        with atomic_path(tmp_path / "a.bin") as tmp:
            tmp.write_bytes(b"x")
        with atomic_open(tmp_path / "b.txt") as f:
            f.write("x")
        write_json(tmp_path / "c.json", {"x": 1})
    finally:
        os.umask(old)
    for name in ("a.bin", "b.txt", "c.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.txt", "c.json"]  # no temporary left


def test_a_failed_atomic_write_leaves_nothing(tmp_path):
    from pspnet_trt.files import atomic_path

    (tmp_path / "a.bin").write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a.bin") as tmp:
        tmp.write_bytes(b"new")
        raise RuntimeError("interrupted")
    assert (tmp_path / "a.bin").read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["a.bin"]


# -- item 24 (layering) ------------------------------------------------------------------------------

PACKAGE = Path(__file__).parents[1] / "pspnet_trt"


def imports_of(path: Path):
    """Absolute module names imported by ``path`` (relative imports resolved)."""
    import ast

    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found += [(module, a.name) for a in node.names]
    return found


def test_runtime_does_not_import_the_build_layer_and_trt_does_not_import_quant():
    for path in sorted((PACKAGE / "runtime").glob("*.py")):
        for module, name in imports_of(path):
            assert not module.startswith("pspnet_trt.trt.build"), f"{path.name} imports {module}"
            assert not (module == "pspnet_trt.trt" and name == "build"), path.name
            for stage in ("quant", "export", "validate", "train", "demo"):
                assert not module.startswith(f"pspnet_trt.{stage}"), f"{path.name} imports {module}"
    # `make engine`'s orchestrator (export -> quantize -> build -> check) is engine.py, beside demo.py
    for path in sorted((PACKAGE / "trt").glob("*.py")):
        for module, _name in imports_of(path):
            for stage in ("quant", "export", "validate", "train", "demo", "engine"):
                assert not module.startswith(f"pspnet_trt.{stage}"), f"trt/{path.name} imports {module}"


def test_opening_the_tensorrt_runtime_does_not_load_the_build_layer():
    """Not only no direct import: reading a manifest through ``pspnet_trt.trt`` must not load ``trt/build.py``."""
    import subprocess
    import sys

    code = ("import sys, pspnet_trt.runtime.tensorrt, pspnet_trt.runtime.segmenter; "
            "print(sorted(m for m in sys.modules if m.startswith('pspnet_trt.') and "
            "m.split('.')[1] in ('trt', 'quant', 'export', 'validate', 'train', 'engine', 'demo')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pspnet_trt.trt.build" not in out and "pspnet_trt.quant" not in out, out


def test_runtime_and_trt_use_no_private_names_of_other_modules():
    import ast

    files = [*sorted((PACKAGE / "runtime").glob("*.py")), *sorted((PACKAGE / "trt").glob("*.py")),
             PACKAGE / "bench.py", *sorted((PACKAGE.parent / "benchmarks").glob("*.py"))]
    for path in files:
        for module, name in imports_of(path):
            assert not (name or "").startswith("_"), f"{path.name} imports {module}.{name}"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                owner = node.value.id if isinstance(node.value, ast.Name) else None
                assert owner in ("self", "cls", "sys", "os", "argparse"), f"{path.name}:{node.lineno} uses {owner}.{node.attr}"
