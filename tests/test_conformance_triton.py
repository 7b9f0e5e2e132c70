"""The Triton column of the conformance matrix (tests/test_conformance.py): every artifact kind of
tests/conformance_artifacts.py served by the real Triton server bundled in nvidia-pytriton (Python backend, on the
CPU), through both of the Python model's interfaces, gives the labels Segmenter gives on the same ONNX.

* ``frames`` (model ``<artifact>``): uint8 BGR frames in, labels out; model.py runs the artifact through Segmenter.
* ``artifact`` (model ``<artifact>__artifact``): the artifact's own tensors, as a tensorrt_plan / onnxruntime_onnx
  model takes them; the client (TritonSegmenter = Segmenter over TritonBackend) prepares the normalised, 0..255
  pixel or bgr8 input itself.

One repository, one server for every model (module fixture). Each model's max_batch_size comes from the artifact's
batch range, and the five images go out in requests of the size that allows (a static batch: its batch; a dynamic
one: up to max_batch_size; the frames model of a non-bgr8 artifact: one frame of any size a request), checked on the
server's statistics.
"""

from __future__ import annotations

import time

import conformance_artifacts as ca
import numpy as np
import pytest
from test_serving import SERVER_REASON, ports

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.skipif(SERVER_REASON is not None, reason=SERVER_REASON or "")]
ARTIFACTS = ca.ARTIFACTS
INTERFACES = ("frames", "artifact")


def model_name(artifact: str, io: str) -> str:
    return artifact if io == "frames" else f"{artifact}__artifact"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return ca.build(tmp_path_factory.mktemp("conformance"))


@pytest.fixture(scope="module")
def imgs():
    return ca.images()


@pytest.fixture(scope="module")
def segmenter_labels(built, imgs):
    return ca.segmenter_labels(built, imgs)


@pytest.fixture(scope="module")
def server(built, tmp_path_factory):
    """Every artifact behind the Python model twice (frames; its own tensors), one repository, one server."""
    from pspnet_trt.serving import RepoOptions, TritonServer, write_repository

    tmp = tmp_path_factory.mktemp("triton_conformance")
    repo = tmp / "repo"
    write_repository([built[a] for a in ARTIFACTS], repo, RepoOptions(backend="python", device="cpu"))
    for a in ARTIFACTS:
        write_repository([built[a]], repo, RepoOptions(name=model_name(a, "artifact"), backend="python",
                                                       python_io="artifact", device="cpu"))
    assert sorted(p.name for p in repo.iterdir()) == sorted(model_name(a, io) for a in ARTIFACTS for io in INTERFACES)
    http, grpc, metrics = ports()
    srv = TritonServer(repo, http_port=http, grpc_port=grpc, metrics_port=metrics, log_file=tmp / "server.log",
                       exit_timeout_s=30)
    srv.start(timeout_s=600)
    try:
        yield srv
    finally:  # a clean stop is test_serving's; here 26 stubs may take longer to unload than the timeout on 2 cores
        srv.stop()


def ask(url: str, call: str, model: str):
    """One call of tritonclient's HTTP client (a new client: the TritonSegmenter's is not ours to use)."""
    import tritonclient.http as th

    client = th.InferenceServerClient(url.split("://")[1])
    try:
        return getattr(client, call)(model)
    finally:
        client.close()


def model_stats(url: str, model: str):
    """(inference_count, execution_count) of a model, from the server's statistics."""
    (m,) = ask(url, "get_inference_statistics", model)["model_stats"]
    return int(m.get("inference_count", 0)), int(m.get("execution_count", 0))


def expected_requests(artifact_path, io: str, max_batch_size: int, n: int):
    """The request sizes the five images go out in: the frames model of a non-bgr8 artifact takes one frame of any
    size a request; otherwise a static batch b goes in requests of b (the last padded), a dynamic one in requests
    of up to max_batch_size."""
    from pspnet_trt.artifacts import batch_range, read_info

    if io == "frames" and not read_info(artifact_path).raw_frames:
        return [1] * n
    least, most = batch_range(artifact_path)
    if least == most:
        return [least] * -(-n // least)
    return [min(max_batch_size, n - start) for start in range(0, n, max_batch_size)]


@pytest.mark.parametrize("io", INTERFACES)
@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_triton_python_model_gives_segmenters_labels(built, imgs, segmenter_labels, server, artifact, io):
    """#24.3 on old main: ``pixels_*`` / ``artifact`` got ImageNet-normalised values from the client (labels
    differ); every static ``*_b1`` / ``frames`` model had max_batch_size 8 whatever the artifact's range."""
    from pspnet_trt.artifacts import batch_range
    from pspnet_trt.serving import TritonSegmenter
    from pspnet_trt.serving.repository import DEFAULT_MAX_BATCH

    name, path = model_name(artifact, io), built[artifact]
    least, most = batch_range(path)
    mbs = int(ask(server.http_url, "get_model_config", name)["max_batch_size"])
    # max_batch_size from the batch range: the frames model batches whatever the artifact (model.py's Segmenter
    # chunks to the artifact's batch): a static b -> b, an ONNX's dynamic batch -> the default; the artifact's
    # own tensors: a static batch -> 0 (the declared shape), a dynamic one -> the default
    if least == most:
        assert mbs == (least if io == "frames" else 0)
    else:
        assert (least, most) == (1, None) and mbs == DEFAULT_MAX_BATCH
    requests = expected_requests(path, io, mbs, len(imgs))
    before = model_stats(server.http_url, name)
    with TritonSegmenter(server.http_url, name) as remote:
        assert remote.frames == (io == "frames")
        labels = remote.predict_batch(imgs)
    assert [m.dtype for m in labels] == [np.uint8] * len(imgs)
    assert [m.shape for m in labels] == [im.shape[:2] for im in imgs]
    expected = segmenter_labels[artifact]
    assert all(len(np.unique(e)) > 1 for e in expected)  # not one class everywhere: a wrongly fed model would show
    assert [np.array_equal(g, e) for g, e in zip(labels, expected)] == [True] * len(imgs)
    # Triton updates its statistics after the response is sent: the last one may lag behind the client
    want = (before[0] + (sum(requests) if mbs else len(requests)),
            before[1] + len(requests))
    deadline = time.monotonic() + 10
    while (got := model_stats(server.http_url, name)) != want and time.monotonic() < deadline:
        time.sleep(0.1)
    assert got == want, f"(inference_count, execution_count) {got}, requests of {requests} give {want}"
