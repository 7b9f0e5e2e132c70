"""Triton serving: model repositories from artifacts, and a real Triton server (the one bundled in
nvidia-pytriton) serving the Python-backend model on the CPU.

The repository tests parse each config.pbtxt with Triton's own ModelConfig protobuf (from tritonclient).
The server tests (marked slow) start and stop the server themselves on free ports; they need the
``[serve]`` extra (tritonclient) and nvidia-pytriton, and skip with a reason without them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pspnet_trt.artifacts import read_onnx_info
from pspnet_trt.cli import main as cli
from pspnet_trt.deploy import DeployInfo
from pspnet_trt.errors import UserError
from pspnet_trt.serving import RepoOptions, write_repository
from pspnet_trt.serving.server import free_port
from pspnet_trt.zoo import get_spec

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES = REPO_ROOT / "samples" / "camvid"


def parse_config(model_dir: Path):
    """config.pbtxt as Triton's ModelConfig message (fails on anything Triton would not parse)."""
    pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed (pip install '.[serve]' in the checkout)")
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def dims(t) -> list:
    return list(t.dims)


def io(t) -> tuple:
    """(name, Triton type without TYPE_, dims) of a config input/output."""
    from tritonclient.grpc import model_config_pb2

    return t.name, model_config_pb2.DataType.Name(t.data_type).replace("TYPE_", ""), list(t.dims)


# -- repositories (no server) --------------------------------------------------------------------

def test_onnx_gives_onnxruntime_config_with_every_number_from_the_artifact(tiny_onnx, tiny_info, tmp_path):
    (model_dir,) = write_repository([tiny_onnx], tmp_path / "repo", RepoOptions(name="tiny", instances=2))
    cfg = parse_config(model_dir)
    assert cfg.name == "tiny" and cfg.platform == "onnxruntime_onnx" and cfg.default_model_filename == "model.onnx"
    assert cfg.max_batch_size == 0  # a static batch of 1: Triton sends the declared shape as it is
    assert not cfg.HasField("dynamic_batching")
    assert [io(t) for t in cfg.input] == [("images", "FP32", [1, 3, 64, 128])]
    assert sorted(io(t) for t in cfg.output) == [("labels", "UINT8", [1, 64, 128]), ("logits", "FP32", [1, 11, 64, 128])]
    assert cfg.instance_group[0].count == 2
    stored = DeployInfo.from_json(cfg.parameters["pspnet_trt"].string_value)
    assert stored == read_onnx_info(tiny_onnx) and stored.class_names == tiny_info.class_names
    assert (model_dir / "1" / "model.onnx").read_bytes() == tiny_onnx.read_bytes()
    assert (model_dir / "labels.txt").read_text().splitlines() == list(tiny_info.class_names)
    readme = (model_dir / "README.md").read_text()
    assert 'TritonSegmenter("http://127.0.0.1:8000", "tiny")' in readme and "pspnet-trt serve" in readme


@pytest.fixture(scope="module")
def dynamic_onnx(tiny_model, tmp_path_factory) -> Path:
    """The tiny model at 64x128, labels out, dynamic batch."""
    from pspnet_trt.export import export_onnx

    info = DeployInfo.from_spec(get_spec("r18_os8_camvid"), input_size=(64, 128), output="labels", batch=None)
    return export_onnx(tiny_model, info, tmp_path_factory.mktemp("dyn") / "dyn.onnx")


def test_dynamic_batch_onnx_batches_and_python_backend_takes_frames(dynamic_onnx, tmp_path):
    onnx_path = dynamic_onnx
    opts = RepoOptions(max_batch=4, max_queue_delay_us=750)
    (ort_dir,) = write_repository([onnx_path], tmp_path / "repo", opts)
    cfg = parse_config(ort_dir)
    assert cfg.max_batch_size == 4 and cfg.dynamic_batching.max_queue_delay_microseconds == 750
    assert dims(cfg.input[0]) == [3, 64, 128] and dims(cfg.output[0]) == [64, 128]  # labels dims from the metadata

    opts = RepoOptions(name="seg", backend="python")
    (py_dir,) = write_repository([onnx_path], tmp_path / "repo", opts)
    cfg = parse_config(py_dir)
    assert cfg.backend == "python" and cfg.max_batch_size == 8 and cfg.HasField("dynamic_batching")
    assert [io(t) for t in cfg.input] == [("frames", "UINT8", [-1, -1, 3])]
    assert [io(t) for t in cfg.output] == [("labels", "UINT8", [-1, -1])]
    assert cfg.instance_group[0].kind == cfg.instance_group[0].KIND_CPU
    assert cfg.parameters["artifact"].string_value == "model.onnx"
    assert (py_dir / "1" / "model.py").read_text() == (REPO_ROOT / "pspnet_trt/serving/triton_model.py").read_text()
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["dyn", "seg"]


def test_rewriting_a_model_dir_replaces_it_whole(tiny_onnx, tmp_path, monkeypatch):
    """A model dir written again holds only what the new artifact needs (no model.py of an earlier python-backend
    model beside an onnxruntime_onnx config, no old version), and a failure part-way leaves the old dir as it was."""
    import pspnet_trt.serving.repository as repository

    (first,) = write_repository([tiny_onnx], tmp_path / "repo", RepoOptions(name="seg", backend="python"))
    (first / "2").mkdir()
    (first / "2" / "model.onnx").write_bytes(b"stale")
    before = sorted(str(p.relative_to(first)) for p in first.rglob("*"))
    monkeypatch.setattr(repository, "model_readme", lambda *a: 1 / 0)  # fails after the model file is copied
    with pytest.raises(ZeroDivisionError):
        write_repository([tiny_onnx], tmp_path / "repo", RepoOptions(name="seg"))
    assert sorted(str(p.relative_to(first)) for p in first.rglob("*")) == before
    assert parse_config(first).backend == "python"
    monkeypatch.undo()
    (again,) = write_repository([tiny_onnx], tmp_path / "repo", RepoOptions(name="seg"))
    assert again == first and parse_config(again).platform == "onnxruntime_onnx"
    assert sorted(str(p.relative_to(again)) for p in again.rglob("*")) == [
        "1", "1/model.onnx", "README.md", "config.pbtxt", "labels.txt", "pspnet-trt.json"]
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["seg"]  # no temporary dirs left


def test_two_artifacts_with_one_model_name_are_refused_before_anything_is_written(tiny_onnx, tmp_path):
    other = tmp_path / "b" / tiny_onnx.name
    other.parent.mkdir()
    other.write_bytes(tiny_onnx.read_bytes())
    with pytest.raises(UserError, match="would both be model"):
        write_repository([tiny_onnx, other], tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_atomic_dir_replaces_a_link_or_file_without_following_it(tmp_path):
    from pspnet_trt.files import atomic_dir

    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.txt").write_text("not ours")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "seg").symlink_to(target)
    (repo / "other").write_text("a file")
    for name in ("seg", "other"):
        with atomic_dir(repo / name) as tmp:
            (tmp / "config.pbtxt").write_text("new")
        assert (repo / name).is_dir() and not (repo / name).is_symlink()
        assert (repo / name / "config.pbtxt").read_text() == "new"
    assert (target / "keep.txt").read_text() == "not ours"  # the link's target is untouched
    assert sorted(p.name for p in repo.iterdir()) == ["other", "seg"]  # no .old/.part left


def test_onnx_io_is_read_with_onnxruntime_where_onnx_is_missing(tiny_onnx, monkeypatch):
    from pspnet_trt.serving import read_artifact

    with_onnx = read_artifact(tiny_onnx)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    without = read_artifact(tiny_onnx)
    assert without == with_onnx and with_onnx.outputs[1].shape == (1, 64, 128)


def write_engine(tmp_path: Path, input_shape, outputs=("labels",), max_batch=1, labels_dtype="uint8",
                 frame_size=None, name="r18_fp16") -> Path:
    """A stand-in engine file (bytes are copied, never run) and the manifest `pspnet-trt build` writes beside it
    (``frame_size``: a bgr8 artifact taking frames of that size)."""
    from pspnet_trt.trt.manifest import Manifest, write_manifest

    raw = {"input_format": "bgr8", "frame_size": frame_size} if frame_size else {}
    info = DeployInfo.from_spec(get_spec("r18_os8_camvid"), input_size=(64, 128), output="labels",
                                batch=None if input_shape[0] == -1 else input_shape[0], precision="fp16",
                                extra={"labels_dtype": labels_dtype}, **raw)
    engine = tmp_path / f"{name}.engine"
    engine.write_bytes(b"not a real plan")
    write_manifest(engine, Manifest(deploy=info.to_dict(), tensorrt_version="10.3.0", gpu={"name": "Orin",
                   "compute_capability": "8.7"}, precision="fp16", input_name="images", input_shape=list(input_shape),
                   outputs=list(outputs), onnx="r18_fp16.onnx", onnx_sha256="0" * 64,
                   build_flags={"max_batch": max_batch}))
    return engine


def test_engine_manifest_gives_tensorrt_plan_config(tmp_path):
    engine = write_engine(tmp_path, [-1, 3, 64, 128], outputs=("logits", "labels"), max_batch=4, labels_dtype="int32")
    (model_dir,) = write_repository([engine], tmp_path / "repo", RepoOptions(instances=3, max_queue_delay_us=50))
    cfg = parse_config(model_dir)
    assert cfg.platform == "tensorrt_plan" and cfg.default_model_filename == "model.plan"
    assert cfg.max_batch_size == 4  # the engine's optimisation profile
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 50
    assert cfg.instance_group[0].kind == cfg.instance_group[0].KIND_GPU and cfg.instance_group[0].count == 3
    assert [io(t) for t in cfg.input] == [("images", "FP32", [3, 64, 128])]
    assert [io(t) for t in cfg.output] == [("logits", "FP32", [11, 64, 128]), ("labels", "INT32", [64, 128])]
    assert (model_dir / "1" / "model.plan").read_bytes() == b"not a real plan"
    assert json.loads((model_dir / "1" / "model.plan.json").read_text())["tensorrt_version"] == "10.3.0"
    with pytest.raises(UserError, match="exceeds the engine's optimisation profile"):
        write_repository([engine], tmp_path / "repo2", RepoOptions(max_batch=16))


def test_static_and_raw_frame_engines_take_their_shapes_from_the_deploy_info(tmp_path):
    static = write_engine(tmp_path, [1, 3, 64, 128])
    cfg = parse_config(write_repository([static], tmp_path / "a")[0])
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    assert dims(cfg.input[0]) == [1, 3, 64, 128] and dims(cfg.output[0]) == [1, 64, 128]

    # bgr8: uint8 NxHxWx3 camera frames in (preprocessing in the graph), labels at the frame size
    raw = write_engine(tmp_path, [1, 360, 480, 3], frame_size=(360, 480), name="raw")
    cfg = parse_config(write_repository([raw], tmp_path / "b")[0])
    assert [io(t) for t in cfg.input] == [("images", "UINT8", [1, 360, 480, 3])]
    assert dims(cfg.output[0]) == [1, 360, 480]  # labels at the frame size
    cfg = parse_config(write_repository([raw], tmp_path / "c", RepoOptions(backend="python"))[0])
    assert dims(cfg.input[0]) == [360, 480, 3] and dims(cfg.output[0]) == [360, 480]  # fixed frame size
    assert cfg.instance_group[0].kind == cfg.instance_group[0].KIND_GPU and cfg.parameters["device"].string_value == "cuda"


def test_a_manifest_whose_shape_disagrees_with_its_deploy_info_is_refused(tmp_path):
    """#24.3: the writer read frame geometry off the tensor shape (NxHxWx3 -> raw frames) whatever the DeployInfo
    said; a normalised-input DeployInfo with an NHWC input shape was written as a raw-frame model."""
    odd = write_engine(tmp_path, [1, 360, 480, 3])  # DeployInfo: normalized 3x64x128
    with pytest.raises(UserError, match=r"shape \[1, 360, 480, 3\], its metadata says \[1, 3, 64, 128\]"):
        write_repository([odd], tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_max_batch_size_follows_the_artifacts_batch_range(tmp_path, dynamic_onnx):
    """#24.3: the python model's max_batch_size was 8 whatever the artifact's batch range."""
    engine = write_engine(tmp_path, [-1, 3, 64, 128], max_batch=4)  # a dynamic engine, profile 1..4
    static2 = write_engine(tmp_path, [2, 3, 64, 128], name="static2")  # a static batch of 2
    dynamic = dynamic_onnx
    expected = {  # artifact: (its own tensors, the python frames model)
        engine: (4, 4), static2: (0, 2), dynamic: (8, 8)}
    for artifact, (tensors, frames) in expected.items():
        got_tensors = parse_config(write_repository([artifact], tmp_path / "t")[0]).max_batch_size
        got_frames = parse_config(write_repository([artifact], tmp_path / "f", RepoOptions(backend="python"))[0])
        assert (got_tensors, got_frames.max_batch_size) == (tensors, frames), artifact.name
        art_io = parse_config(write_repository([artifact], tmp_path / "a", RepoOptions(
            backend="python", python_io="artifact"))[0]).max_batch_size
        assert art_io == tensors, artifact.name
    assert dims(parse_config(tmp_path / "f" / "static2").input[0]) == [-1, -1, 3]  # batch dim in front: batching


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert cli(["triton", str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing.onnx: no such file" in err
    (tmp_path / "x.pt").write_bytes(b"")
    assert cli(["triton", str(tmp_path / "x.pt"), "--out", str(tmp_path / "r")]) == 2
    assert "unknown artifact type" in capsys.readouterr().err
    assert cli(["serve", str(tmp_path / "nothing")]) == 2
    assert "no such model repository" in capsys.readouterr().err


def test_serve_without_the_wheel_says_how_to_install_it(tmp_path, capsys, monkeypatch, tiny_onnx):
    write_repository([tiny_onnx], tmp_path / "repo", RepoOptions(backend="python"))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pytriton" else real(name, *a))
    ports = [str(free_port()) for _ in range(3)]
    assert cli(["serve", str(tmp_path / "repo"), "--http-port", ports[0], "--grpc-port", ports[1],
                "--metrics-port", ports[2]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nvidia-pytriton" in err and "pip install" in err


def test_serve_on_a_busy_port_names_it(tmp_path, capsys, tiny_onnx):
    import socket

    write_repository([tiny_onnx], tmp_path / "repo", RepoOptions(backend="python"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli(["serve", str(tmp_path / "repo"), "--http-port", str(port), "--grpc-port", str(free_port()),
                    "--metrics-port", str(free_port())]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"port {port}" in err and "busy" in err and "--http-port" in err


# -- a real server -------------------------------------------------------------------------------

def _server_reason():
    if importlib.util.find_spec("tritonclient") is None:
        return "tritonclient is not installed (pip install '.[serve]' in the checkout)"
    try:
        from pspnet_trt.serving import find_bundled_server

        find_bundled_server()
    except UserError as e:
        return str(e)
    return None


SERVER_REASON = _server_reason()
needs_server = pytest.mark.skipif(SERVER_REASON is not None, reason=SERVER_REASON or "")


def camvid_images(n: int):
    import cv2

    root = Path(os.environ["CAMVID_ROOT"]) if os.environ.get("CAMVID_ROOT") else SAMPLES
    paths = sorted((root / "test").glob("*.*"))[:n] or sorted((SAMPLES / "test").glob("*.*"))[:n]
    return [cv2.imread(str(p)) for p in paths]


def ports():
    chosen = set()
    while len(chosen) < 3:
        chosen.add(free_port())
    return sorted(chosen)


def server_processes(marker: str):
    """pids whose command line contains ``marker`` (our server or its stubs)."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmd and int(d.name) != os.getpid():
                found.append(int(d.name))
    return found


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """r18_os8_camvid (random weights, 64x128, dynamic batch) behind the Python backend, dynamic batching on: frames
    in (seg), its own normalised tensors (seg_tensors), a pixels export's own tensors (pixels), and a bgr8 export
    of 90x120 frames behind the frames model (raw)."""
    from pspnet_trt.export import export_zoo
    from pspnet_trt.serving import TritonServer

    tmp = tmp_path_factory.mktemp("triton")
    onnx_path = export_zoo("r18_os8_camvid", tmp / "r18.onnx", input_size=(64, 128), batch=None)
    write_repository([onnx_path], tmp / "repo", RepoOptions(name="seg", backend="python", max_batch=8,
                                                            max_queue_delay_us=2000))
    # the artifact's own tensors (float32 Nx3xHxW in), as a tensorrt_plan / onnxruntime_onnx model takes them
    write_repository([onnx_path], tmp / "repo", RepoOptions(name="seg_tensors", backend="python", python_io="artifact"))
    # a pixels artifact (0..255 float32 in, normalised in the graph) with its own tensors, 2 images a request
    pixels = export_zoo("r18_os8_camvid", tmp / "pixels.onnx", input_size=(64, 128), batch=None, input_format="pixels")
    write_repository([pixels], tmp / "repo", RepoOptions(name="pixels", backend="python", python_io="artifact",
                                                         max_batch=2))
    # a raw-frame (bgr8) export, static batch 1: the frames model takes its frame size only
    raw = export_zoo("r18_os8_camvid", tmp / "raw.onnx", input_size=(64, 128), input_format="bgr8",
                     frame_size=(90, 120))
    write_repository([raw], tmp / "repo", RepoOptions(name="raw", backend="python"))
    http, grpc, metrics = ports()
    server = TritonServer(tmp / "repo", http_port=http, grpc_port=grpc, metrics_port=metrics,
                          log_file=tmp / "server.log", exit_timeout_s=5)
    server.start(timeout_s=120)
    try:
        yield server, onnx_path, pixels, raw
    finally:
        pid = server.process.pid if server.process else None
        assert server.stop() == 0
        assert pid is None or not server_processes(f"--http-port {http}")


@pytest.mark.slow
@needs_server
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_triton_labels_equal_segmenter_bit_for_bit(served, protocol):
    from pspnet_trt.runtime import Segmenter
    from pspnet_trt.serving import TritonSegmenter

    server, onnx_path, *_ = served
    local = Segmenter.open(onnx_path)
    url = server.http_url if protocol == "http" else server.grpc_url
    frames, tensors = TritonSegmenter(url, "seg"), TritonSegmenter(url, "seg_tensors")
    assert frames.frames and not tensors.frames  # the client preprocesses for the second, as Segmenter does
    # the frames model is a bgr8 backend taking any frame size, one a request; the other the artifact itself
    assert (frames.info.input_format, frames.backend.any_frame_size, frames.backend.max_batch) == ("bgr8", True, 8)
    assert (tensors.info, tensors.backend.any_frame_size, tensors.backend.max_batch) == (local.info, False, 8)
    assert frames.class_names == tensors.class_names == local.class_names
    for image in camvid_images(6):
        expected = local.predict(image)
        for remote in (frames, tensors):
            got = remote.predict(image)
            assert got.dtype == np.uint8 and got.shape == image.shape[:2]
            assert np.array_equal(got, expected), remote
    # a bgr8 artifact behind the frames model: fixed frame size (the client resizes as Segmenter does), batch 1
    raw_local, raw_remote = Segmenter.open(served[3], device="cpu"), TritonSegmenter(url, "raw")
    assert (raw_remote.info.frame_size, raw_remote.backend.any_frame_size, raw_remote.backend.max_batch) == (
        (90, 120), False, 1)
    images = camvid_images(3)
    assert all(np.array_equal(g, e) for g, e in zip(raw_remote.predict_batch(images), raw_local.predict_batch(images)))
    # The model ran under this interpreter's numpy (2.x here), where pb_utils.Tensor/as_numpy lose the data.
    assert f"(numpy {np.__version__})" in server.read_log()


@pytest.mark.slow
@needs_server
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_keep_ratio_reaches_the_frames_model(served, protocol):
    """TritonSegmenter(resize="keep_ratio") on the frames interface of a normalized artifact: the client sends the
    raw frame and the model resized it with its own Segmenter's default (stretch for CamVid), so the mode was
    ignored while repr said keep_ratio. Each request now carries it: the labels are local keep_ratio's."""
    from pspnet_trt.runtime import Segmenter
    from pspnet_trt.serving import TritonSegmenter

    server, onnx_path, *_ = served
    url = server.http_url if protocol == "http" else server.grpc_url
    images = [im[:180 + 60 * i] for i, im in enumerate(camvid_images(2))]  # 180x480, 240x480: not the input's 1:2
    keep = Segmenter.open(onnx_path, device="cpu", resize="keep_ratio").predict_batch(images)
    stretch = Segmenter.open(onnx_path, device="cpu", resize="stretch").predict_batch(images)
    assert not all(np.array_equal(k, s) for k, s in zip(keep, stretch))  # the modes differ on these images
    with TritonSegmenter(url, "seg", resize="keep_ratio") as remote, TritonSegmenter(url, "seg") as default:
        assert remote.frames and remote.resize == "keep_ratio" and "resize=keep_ratio" in repr(remote)
        assert [np.array_equal(g, k) for g, k in zip(remote.predict_batch(images), keep)] == [True, True]
        # the default stays the model's (stretch for CamVid), request by request on one server
        assert [np.array_equal(g, s) for g, s in zip(default.predict_batch(images), stretch)] == [True, True]


@pytest.mark.slow
@needs_server
def test_a_pixels_artifact_served_with_its_own_tensors_gives_segmenters_labels(served):
    """#24.3: the client fed every tensors model ImageNet-normalised values; a pixels model (0..255 in) got 1.3-1.7
    for a frame of 200. Now it gets what Segmenter feeds the ONNX, in requests of the config's max_batch_size."""
    from pspnet_trt.runtime import Segmenter
    from pspnet_trt.serving import TritonSegmenter

    server, _, pixels, _ = served
    local = Segmenter.open(pixels, device="cpu")
    local.backend.max_batch = 2  # the same chunks as the served model's (ONNX Runtime's numbers per batch shape)
    images = [im[: 200 + 40 * i, : 300 + 40 * i] for i, im in enumerate(camvid_images(5))]  # sizes differ
    expected = local.predict_batch(images)
    assert all(len(np.unique(e)) > 1 for e in expected)  # not one class everywhere: a wrong input would show
    with TritonSegmenter(server.http_url, "pixels") as remote:
        got = remote.predict_batch(images)
        assert [g.shape for g in got] == [im.shape[:2] for im in images]
        assert [np.array_equal(g, e) for g, e in zip(got, expected)] == [True] * 5
        assert remote.info.input_format == "pixels" and remote.backend.max_batch == 2
        assert "pixels" in repr(remote) and "TritonSegmenter" in repr(remote)


@pytest.mark.slow
@needs_server
def test_uint8_output_bytes_arrive(served):
    """The numpy-2 pitfall, at the wire: the labels output carries H*W bytes, not 0."""
    import tritonclient.http as th

    server, *_ = served
    image = camvid_images(1)[0]
    client = th.InferenceServerClient(server.http_url.split("://")[1])
    inp = th.InferInput("frames", [1, *image.shape], "UINT8")
    inp.set_data_from_numpy(image[None])
    result = client.infer("seg", [inp], outputs=[th.InferRequestedOutput("labels", binary_data=True)])
    (out,) = result.get_response()["outputs"]
    assert out["datatype"] == "UINT8" and out["shape"] == [1, *image.shape[:2]]
    assert out["parameters"]["binary_data_size"] == image.shape[0] * image.shape[1]
    client.close()


@pytest.mark.slow
@needs_server
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_wrong_dtype_or_shape_gets_tritons_error_and_the_server_keeps_serving(served, protocol):
    import importlib

    from pspnet_trt.serving import TritonSegmenter

    tc = importlib.import_module(f"tritonclient.{protocol}")
    from tritonclient.utils import InferenceServerException

    server, onnx_path, *_ = served
    url = server.http_url if protocol == "http" else server.grpc_url
    client = tc.InferenceServerClient(url.split("://")[1])
    bad = [("FP32", np.zeros((1, 64, 128, 3), np.float32), "data-type is 'FP32', but model 'seg' expects 'UINT8'"),
           ("UINT8", np.zeros((1, 64, 128, 4), np.uint8), r"unexpected shape .* got \[1,64,128,4\]"),
           ("UINT8", np.zeros((1, 64, 128), np.uint8), r"unexpected shape .* got \[1,64,128\]")]
    for dtype, array, message in bad:
        inp = tc.InferInput("frames", list(array.shape), dtype)
        inp.set_data_from_numpy(array)
        with pytest.raises(InferenceServerException, match=message):
            client.infer("seg", [inp])
    client.close()
    image = camvid_images(1)[0]
    assert TritonSegmenter(url, "seg").predict(image).shape == image.shape[:2]
    assert server.alive()


@pytest.mark.slow
@needs_server
def test_four_concurrent_clients_get_their_own_labels_through_dynamic_batches(served):
    """4 clients x 25 requests, one image each: no error, every answer is its own image's (no mixing in a batch)."""
    import tritonclient.grpc as tg

    from pspnet_trt.runtime import Segmenter
    from pspnet_trt.serving import TritonSegmenter

    server, onnx_path, *_ = served
    local = Segmenter.open(onnx_path)
    images = [im[::4, ::4].copy() for im in camvid_images(4)]  # 90x120: same shape, so Triton can batch them
    images = [np.roll(im, 17 * i, axis=1) for i, im in enumerate(images)]  # distinct even if fewer files exist
    expected = [local.predict(im) for im in images]
    assert all(not np.array_equal(expected[0], e) for e in expected[1:])
    stats0 = tg.InferenceServerClient(server.grpc_url.split("://")[1]).get_inference_statistics("seg", as_json=True)
    errors, wrong = [], []

    def client(i: int) -> None:
        url = server.grpc_url if i % 2 else server.http_url  # both protocols at once
        seg = TritonSegmenter(url, "seg")
        for _ in range(25):
            try:
                if not np.array_equal(seg.predict(images[i]), expected[i]):
                    wrong.append(i)
            except Exception as e:  # collected, asserted below
                errors.append(f"client {i}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert errors == [] and wrong == []

    def counts(s):
        m = s["model_stats"][0]
        return int(m.get("inference_count", 0)), int(m.get("execution_count", 0))

    # Triton updates its statistics after the responses are sent: the last few can lag behind the clients
    stats_client = tg.InferenceServerClient(server.grpc_url.split("://")[1])
    deadline = time.monotonic() + 10
    while True:
        (inf1, exe1), (inf0, exe0) = counts(stats_client.get_inference_statistics("seg", as_json=True)), counts(stats0)
        if inf1 - inf0 >= 100 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert inf1 - inf0 == 100
    assert exe1 - exe0 < 100, "no request was batched with another: dynamic batching did not act"


def run_serve(repo: Path, http: int, grpc: int, metrics: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "pspnet_trt", "serve", str(repo), "--http-port", str(http),
                             "--grpc-port", str(grpc), "--metrics-port", str(metrics), "--ready-timeout", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_gone(marker: str, timeout_s: float = 20.0) -> list:
    deadline = time.monotonic() + timeout_s
    while server_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    return server_processes(marker)


def one_model_repo(server, tmp_path: Path) -> Path:
    """A copy of the served repository with only the frames model (one stub to start)."""
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(server.repository / "seg", repo / "seg")
    return repo


@pytest.mark.slow
@needs_server
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_serve_stops_cleanly_on_a_signal(served, sig, tmp_path):
    """SIGTERM/SIGINT: the server is stopped and `serve` exits 0; SIGKILL of `serve`: the server dies with it."""
    server, *_ = served
    http, grpc, metrics = ports()
    marker = f"--http-port {http}"
    proc = run_serve(one_model_repo(server, tmp_path), http, grpc, metrics)
    try:
        line = proc.stdout.readline()  # printed once every model is ready
        assert line.startswith("serving "), line + proc.stderr.read()
        assert len(server_processes(marker)) >= 2  # `serve` and tritonserver
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 0, err
        assert "stopped (Triton exit code 0)" in out
    assert wait_gone(marker) == []


@pytest.mark.slow
@needs_server
def test_serve_names_the_reason_a_model_fails_to_load(served, tmp_path):

    server, *_ = served
    repo = one_model_repo(server, tmp_path)
    (repo / "seg" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    http, grpc, metrics = ports()
    proc = run_serve(repo, http, grpc, metrics)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "failed to load 'seg'" in lines[0] and "model.onnx is not an ONNX file" in lines[0]
    assert server_processes(f"--http-port {http}") == []
