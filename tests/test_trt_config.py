"""How our build configuration maps to TensorRT API calls, per TensorRT version.

A recording double of the `tensorrt` module stands in for TensorRT here: it checks which flags and
calls our code makes for each version (alongside the mypy check against NVIDIA's stubs). It is no
evidence that an engine builds or runs: that is tests/test_trt_gpu.py, which needs a GPU.
"""

from __future__ import annotations

import enum
import json
import sys
import types

import pytest

from pspnet_trt.errors import UserError
from pspnet_trt.trt import BuildConfig, capabilities
from pspnet_trt.trt.manifest import (
    EngineMismatch,
    GpuInfo,
    Manifest,
    check_manifest,
    read_manifest,
    write_manifest,
)


def recording_tensorrt(version: str, input_shape=(1, 3, 64, 128), timing_cache_fits=True, layers=()):
    """``layers``: (name, output dtype name) of the parsed network's layers."""
    calls = []
    m = types.ModuleType("tensorrt")
    m.__version__ = version
    m.BuilderFlag = enum.Enum("BuilderFlag", "FP16 INT8 GPU_FALLBACK OBEY_PRECISION_CONSTRAINTS")
    m.DataType = enum.Enum("DataType", "FLOAT HALF INT8 INT32")
    m.float32, m.int32 = m.DataType.FLOAT, m.DataType.INT32

    class Layer:
        def __init__(self, name, dtype):
            object.__setattr__(self, "name", name)
            object.__setattr__(self, "num_outputs", 1)
            object.__setattr__(self, "_dtype", getattr(m, dtype))

        def get_output(self, j):
            return types.SimpleNamespace(dtype=self._dtype)

        def __setattr__(self, k, v):
            calls.append(("layer", self.name, k, v.name))

        def set_output_type(self, j, dtype):
            calls.append(("layer_output_type", self.name, j, dtype.name))
    m.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1})
    m.MemoryPoolType = enum.Enum("MemoryPoolType", "WORKSPACE")
    m.DeviceType = enum.Enum("DeviceType", "GPU DLA")
    m.Dims = tuple

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class Config:
        def __setattr__(self, k, v):
            calls.append(("set", k, v))

        def set_flag(self, f):
            calls.append(("flag", f.name))

        def set_memory_pool_limit(self, pool, size):
            calls.append(("pool", pool.name, size))

        def add_optimization_profile(self, profile):
            calls.append(("add_profile",))

        def set_calibration_profile(self, profile):
            calls.append(("calibration_profile",))

        def create_timing_cache(self, blob):
            return object()

        def set_timing_cache(self, cache, ignore_mismatch):
            calls.append(("timing_cache", ignore_mismatch))
            return timing_cache_fits

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            calls.append(("profile", name, lo, opt, hi))

    class Network:
        num_layers = len(layers)

        def get_input(self, i):
            return types.SimpleNamespace(name="images", shape=list(input_shape))

        def get_layer(self, i):
            return Layer(*layers[i])

    class Builder:
        num_DLA_cores = 0

        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls.append(("network_flags", flags))
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            return True

    class IProgressMonitor:
        def __init__(self):
            pass

    m.Logger, m.Builder, m.OnnxParser, m.IProgressMonitor = Logger, Builder, OnnxParser, IProgressMonitor
    return m, calls


def run(version: str, cfg: BuildConfig, monkeypatch, info=None, **double):
    from pspnet_trt.trt import build

    trt, calls = recording_tensorrt(version, **double)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    caps = capabilities(version)
    strongly = build.use_strong_typing(caps, cfg)
    builder, network, _ = build.network_from_onnx("m.onnx", caps, strongly)
    build.configure(builder, network, cfg, caps, strongly, info)
    return calls


def test_fp16_on_10_13_is_strongly_typed_without_flags(monkeypatch):
    calls = run("10.13.0", BuildConfig(precision="fp16", opt_level=4), monkeypatch)
    assert ("network_flags", 1 << 1) in calls  # STRONGLY_TYPED only (no EXPLICIT_BATCH on 10.x)
    assert not [c for c in calls if c[0] == "flag"]
    assert ("set", "builder_optimization_level", 4) in calls
    assert any(c[:2] == ("set", "progress_monitor") for c in calls)


def test_tensorrt_8_6_uses_builder_flags_and_explicit_batch(monkeypatch):
    calls = run("8.6.2", BuildConfig(precision="best"), monkeypatch)
    assert ("network_flags", 1) in calls  # EXPLICIT_BATCH, weakly typed
    assert ("flag", "FP16") in calls and ("flag", "INT8") in calls
    assert not any(c[:2] == ("set", "progress_monitor") for c in calls)  # no IProgressMonitor before 10


def test_int8_graph_with_fp16_islands_gets_fp16_flag_when_weakly_typed(monkeypatch, tiny_info):
    def int8(kept, dtype="fp16"):
        return tiny_info.with_(precision="int8", extra={"quantization": {"kept_float": kept, "kept_float_dtype": dtype}})

    flags = lambda calls: {c[1] for c in calls if c[0] == "flag"}  # noqa: E731
    assert flags(run("8.6.2", BuildConfig(precision="int8"), monkeypatch, int8(["/c/Conv"]))) == {"INT8", "FP16"}
    assert flags(run("8.6.2", BuildConfig(precision="int8"), monkeypatch, int8([]))) == {"INT8"}
    assert flags(run("8.6.2", BuildConfig(precision="int8"), monkeypatch, int8(["/c/Conv"], "fp32"))) == {"INT8"}
    assert not flags(run("10.13.0", BuildConfig(precision="int8"), monkeypatch, int8(["/c/Conv"])))  # graph types


def test_tensorrt_11_refuses_implicit_int8(monkeypatch, tmp_path):
    cal = tmp_path / "c.txt"
    cal.write_text("# root: /\n")
    with pytest.raises(UserError, match="removed implicit INT8"):
        run("11.0.0", BuildConfig(precision="int8", calibration=str(cal)), monkeypatch)


def test_dla_without_dla_cores_is_refused(monkeypatch):
    with pytest.raises(UserError, match="no DLA"):
        run("10.3.0", BuildConfig(dla_core=0), monkeypatch)


def test_capabilities_table():
    assert capabilities("8.5.2").explicit_batch_flag and not capabilities("8.5.2").strongly_typed
    assert not capabilities("8.5.2").opt_level and capabilities("8.6.2").opt_level
    assert not capabilities("8.6.2").uint8_labels and capabilities("10.3.0").uint8_labels
    assert capabilities("10.3.0").strongly_typed and capabilities("10.3.0").precision_flags
    assert not capabilities("10.3.0").weak_typing_deprecated
    # 10.12 deprecates the precision flags (the implicit INT8 path still needs them); 11 removes both
    assert capabilities("10.12.0").precision_flags and capabilities("10.12.0").weak_typing_deprecated
    assert capabilities("10.12.0").implicit_int8
    assert not capabilities("11.0.1").implicit_int8 and not capabilities("11.0.1").precision_flags


def test_opt_level_is_refused_on_8_5(monkeypatch):
    with pytest.raises(UserError, match="no builder optimisation level"):
        run("8.5.2", BuildConfig(precision="fp16", opt_level=3), monkeypatch)
    assert ("set", "builder_optimization_level", 3) in run("8.6.2", BuildConfig(precision="fp16", opt_level=3),
                                                           monkeypatch)


def test_weak_typing_on_10_12_still_sets_flags_with_a_warning(monkeypatch, caplog):
    from pspnet_trt.trt import build

    trt, _ = recording_tensorrt("10.12.0")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    flags = build.precision_flags(BuildConfig(precision="int8"), capabilities("10.12.0"), strongly_typed=False)
    assert [f.name for f in flags] == ["INT8"] and "deprecates builder precision flags" in caplog.text
    with pytest.raises(UserError, match="no FP16/INT8 builder flags"):
        build.precision_flags(BuildConfig(precision="int8"), capabilities("11.0.0"), strongly_typed=False)


def test_strongly_typed_build_refuses_a_precision_the_graph_lacks(monkeypatch, tiny_info):
    assert tiny_info.precision == "fp32"
    with pytest.raises(UserError, match="fp32 graph .* engine would be fp32, not fp16.*export --precision fp16"):
        run("10.13.0", BuildConfig(precision="fp16"), monkeypatch, tiny_info)
    run("10.13.0", BuildConfig(precision="fp32"), monkeypatch, tiny_info)
    run("10.13.0", BuildConfig(precision="best"), monkeypatch, tiny_info)  # best = whatever the graph is
    assert ("flag", "FP16") in run("8.6.2", BuildConfig(precision="fp16"), monkeypatch, tiny_info)  # weak: flags


def test_dynamic_batch_gets_an_optimization_profile(monkeypatch):
    calls = run("10.3.0", BuildConfig(precision="best", max_batch=4), monkeypatch, input_shape=(-1, 3, 64, 128))
    assert ("profile", "images", (1, 3, 64, 128), (4, 3, 64, 128), (4, 3, 64, 128)) in calls
    assert ("add_profile",) in calls
    static = run("10.3.0", BuildConfig(precision="best", max_batch=4), monkeypatch)
    assert not [c for c in static if c[0] in ("profile", "add_profile")]
    with pytest.raises(UserError, match="dynamic dimensions"):
        run("10.3.0", BuildConfig(precision="best"), monkeypatch, input_shape=(-1, 3, -1, 128))
    with pytest.raises(UserError, match="--max-batch"):
        BuildConfig(max_batch=0)


def test_a_timing_cache_that_does_not_fit_is_reported(monkeypatch, tmp_path, caplog):
    cfg = BuildConfig(precision="best", timing_cache=str(tmp_path / "t.cache"))
    assert ("timing_cache", False) in run("10.3.0", cfg, monkeypatch)
    assert "does not fit" not in caplog.text
    run("10.3.0", cfg, monkeypatch, timing_cache_fits=False)
    assert "does not fit this TensorRT/GPU" in caplog.text


def test_make_engine_exports_int32_labels_for_tensorrt_8(monkeypatch):
    from pspnet_trt.trt.build import labels_dtype

    for version, dtype in (("8.5.2", "int32"), ("8.6.2", "int32"), ("10.3.0", "uint8")):
        monkeypatch.setitem(sys.modules, "tensorrt", recording_tensorrt(version)[0])
        assert labels_dtype() == dtype


def test_manifest_refuses_other_tensorrt_and_other_gpu(tmp_path, tiny_info, caplog):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    m = Manifest(deploy=tiny_info.to_dict(), tensorrt_version="10.3.0", gpu={"name": "Orin", "compute_capability": "8.7"},
                 precision="fp16", input_name="images", input_shape=[1, 3, 64, 128], outputs=["logits", "labels"],
                 onnx="m.onnx", onnx_sha256="0" * 64)
    write_manifest(engine, m)
    back = read_manifest(engine)
    assert back.info == tiny_info and json.loads((tmp_path / "m.engine.json").read_text())["precision"] == "fp16"
    check_manifest(back, engine, "10.3.0", GpuInfo("Orin", "8.7"))
    with pytest.raises(EngineMismatch, match="built with TensorRT 10.3.0 but this is TensorRT 10.4.0.*rebuild"):
        check_manifest(back, engine, "10.4.0", GpuInfo("Orin", "8.7"))
    with pytest.raises(EngineMismatch, match="compute capability 8.7.*RTX 4090"):
        check_manifest(back, engine, "10.3.0", GpuInfo("RTX 4090", "8.9"))
    assert "not promise" not in caplog.text
    check_manifest(back, engine, "10.3.0", GpuInfo("Orin NX", "8.7"))  # same architecture, other model: a warning
    assert "built on Orin, this is Orin NX" in caplog.text
    (tmp_path / "m.engine.json").unlink()
    with pytest.raises(UserError, match="no manifest"):
        read_manifest(engine)


def test_opening_an_engine_without_tensorrt_names_what_is_missing(tmp_path, tiny_info, monkeypatch):
    pytest.importorskip("numpy")
    if "tensorrt" in sys.modules or _has("tensorrt"):
        pytest.skip("tensorrt is installed here")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    write_manifest(engine, Manifest(deploy=tiny_info.to_dict(), tensorrt_version="10.3.0", gpu={},
                                    precision="fp16", input_name="images", input_shape=[1, 3, 64, 128],
                                    outputs=["labels"], onnx="m.onnx", onnx_sha256=""))
    from pspnet_trt.runtime import Segmenter

    with pytest.raises(UserError, match=r"tensorrt is needed.*pip install '\.\[trt\]' in the pspnet-trt checkout"):
        Segmenter.open(engine, device="cuda")


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_engine_io_must_match_its_manifest(tiny_info):
    from pspnet_trt.runtime.tensorrt import TensorIO, check_engine_io

    good = [TensorIO("images", True, (1, 3, 64, 128), "FLOAT"), TensorIO("logits", False, (1, 11, 64, 128), "FLOAT"),
            TensorIO("labels", False, (1, 64, 128), "UINT8")]
    check_engine_io(good, tiny_info, "m.engine")
    check_engine_io([good[0]._replace(shape=(-1, 3, 64, 128)), *good[1:]], tiny_info.with_(batch=None), "m.engine")
    bad = {
        "inputs .*'input'": [good[0]._replace(name="input"), *good[1:]],
        "takes HALF": [good[0]._replace(dtype="HALF"), *good[1:]],
        r"takes FLOAT \(1, 3, 64, 96\)": [good[0]._replace(shape=(1, 3, 64, 96)), *good[1:]],
        "outputs": good[:2],
        "output logits is FLOAT": [good[0], good[1]._replace(shape=(1, 19, 64, 128)), good[2]],
    }
    for message, io in bad.items():
        with pytest.raises(UserError, match=f"{message}.*rebuild m.engine"):
            check_engine_io(io, tiny_info, "m.engine")


def test_dlpack_tensors_are_checked_before_use():
    torch = pytest.importorskip("torch")
    from pspnet_trt.runtime.tensorrt import check_dlpack_tensor

    check_dlpack_tensor(torch.zeros(2, 3, 64, 128), (2, 3, 64, 128), "float32", "images")
    with pytest.raises(UserError, match="not contiguous"):
        check_dlpack_tensor(torch.zeros(2, 64, 128, 3).permute(0, 3, 1, 2), (2, 3, 64, 128), "float32", "images")
    with pytest.raises(UserError, match="images is float16"):
        check_dlpack_tensor(torch.zeros(2, 3, 64, 128, dtype=torch.float16), (2, 3, 64, 128), "float32", "images")
    with pytest.raises(UserError, match="labels is uint8 \\(2, 64, 127\\)"):
        check_dlpack_tensor(torch.zeros(2, 64, 127, dtype=torch.uint8), (2, 64, 128), "uint8", "labels")
    import numpy as np  # CuPy-like flags

    check_dlpack_tensor(np.zeros((2, 64, 128), np.uint8), (2, 64, 128), "uint8", "labels")
    with pytest.raises(UserError, match="not contiguous"):
        check_dlpack_tensor(np.zeros((2, 128, 64), np.uint8).transpose(0, 2, 1), (2, 64, 128), "uint8", "labels")


def test_implicit_calibration_is_refused_for_batches_above_one(monkeypatch, tmp_path, tiny_info):
    cal = tmp_path / "c.txt"
    cal.write_text("# root: /\n")
    with pytest.raises(UserError, match="batch-1 engines only.*pspnet-trt quantize"):
        run("10.3.0", BuildConfig(precision="int8", calibration=str(cal), max_batch=4), monkeypatch,
            tiny_info.with_(batch=None, precision="int8"), input_shape=(-1, 3, 64, 128))


RAW_FRAME_LAYERS = (("/preprocess/Cast", "float32"), ("/preprocess/resize/MatMul", "float32"),
                    ("/preprocess/resize/Div", "int32"), ("/preprocess/Sub", "float32"),
                    ("/backbone_net/stem/Conv", "float32"))


@pytest.mark.parametrize("precision", ["fp16", "best"])
def test_weakly_typed_build_keeps_a_raw_frame_graphs_preprocessing_fp32(monkeypatch, precision):
    """With FP16/INT8 builder flags TensorRT may pick any precision for a layer: the in-graph resize's exact
    integer sums (up to 255 * 2048, beyond FP16's range) are pinned to FP32; the network is left to the flags."""
    calls = run("8.6.2", BuildConfig(precision=precision), monkeypatch, layers=RAW_FRAME_LAYERS)
    pinned = [c for c in calls if c[0] in ("layer", "layer_output_type")]
    float_pre = ["/preprocess/Cast", "/preprocess/resize/MatMul", "/preprocess/Sub"]
    assert pinned == [c for n in float_pre for c in (("layer", n, "precision", "FLOAT"),
                                                      ("layer_output_type", n, 0, "FLOAT"))]
    assert ("flag", "OBEY_PRECISION_CONSTRAINTS") in calls


def test_strongly_typed_build_pins_nothing(monkeypatch):
    calls = run("10.13.0", BuildConfig(precision="fp16"), monkeypatch, layers=RAW_FRAME_LAYERS)
    assert not [c for c in calls if c[0] in ("layer", "layer_output_type")]
    assert ("flag", "OBEY_PRECISION_CONSTRAINTS") not in calls
