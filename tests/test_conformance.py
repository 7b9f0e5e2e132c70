"""The conformance matrix: every artifact kind through every consumer gives the labels Segmenter gives.

Rows: tests/conformance_artifacts.py (normalized labels / logits, bgr8 with and without an in-graph resize,
pixels; FP32 / FP16 / INT8; a static batch of 1 and a dynamic batch). Columns: Segmenter with 1 and 5 images,
validate, the engine's no-data check (an ONNX standing in for the engine), debug, predict, bench, and, with the
recording TensorRT double (calls and shapes only, never evidence that an engine works), Segmenter over a dynamic
1..4 engine and a static batch-2 engine. The Triton column is tests/test_conformance_triton.py.

The expected labels of a cell are Segmenter's on the same artifact (ONNX Runtime, CPU), so each cell checks that
the consumer feeds the artifact what it takes (its input format, frame size, batch rule) and reads back what it
gives (labels or logits), not the model's accuracy. Segmenter's labels themselves, and the engine check's
agreement, are checked against PyTorch's computed by an independent path written here (independent_labels: cv2
resize, normalisation, the module's forward, F.interpolate, argmax), one row per input format and frame upsample,
so a bug inside the shared inference door fails them (INTER_NEAREST for INTER_LINEAR in
preprocess.logits_to_labels fails the normalized-logits rows of both).
"""

from __future__ import annotations

import sys
from pathlib import Path

import conformance_artifacts as ca
import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
ARTIFACTS = ca.ARTIFACTS


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    return ca.build(tmp_path_factory.mktemp("conformance"))


@pytest.fixture(scope="session")
def imgs():
    return ca.images()


@pytest.fixture(scope="session")
def few(imgs):
    """Three of the images (two at the bgr8 frame size, one of another size and ratio) for the consumers that
    run PyTorch too (validate, the engine check): the batch rule is what the five images are for."""
    return imgs[:3]


@pytest.fixture(scope="session")
def segmenter_labels(built, imgs):
    return ca.segmenter_labels(built, imgs)


def reference(info):
    """The PyTorch model, as the engine check opens it: labels only when the artifact has labels only."""
    from pspnet_trt.runtime.torch_backend import TorchBackend

    output = "labels" if "logits" not in info.output_names else "logits"
    return TorchBackend(ca.model(), ca.base_info().with_(output=output), device="cpu")


def independent_labels(info, image):
    """PyTorch's labels of ``image``, at its own size, for an artifact described by ``info``, written out here
    without the product's inference door or preprocessing: the image (a bgr8 artifact: first to its frame size)
    cv2.resize INTER_LINEAR to the network input, channel order, ``(x - mean) / std``; the trained module's
    forward; its scores upsampled with F.interpolate (bilinear, align_corners=False, as the model does) where
    the artifact's graph and host upsample them, argmax; label maps resized nearest."""
    import torch
    import torch.nn.functional as F

    def bilinear(t, size):
        return F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)

    def nearest(labels, size):
        return F.interpolate(labels[None, None].float(), size=tuple(size), mode="nearest")[0, 0].to(torch.uint8)

    norm, (h, w), (ih, iw) = info.normalization, image.shape[:2], info.input_size
    frame = cv2.resize(image, info.frame_size[::-1], interpolation=cv2.INTER_LINEAR) if info.frame_size else image
    x = cv2.resize(frame, (iw, ih), interpolation=cv2.INTER_LINEAR)
    x = x[..., ::-1] if norm.channel_order == "rgb" else x
    x = (x.astype(np.float32) - np.asarray(norm.mean, np.float32)) / np.asarray(norm.std, np.float32)
    with torch.no_grad():
        scores = ca.model().eval()(torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None])
        if info.frame_size is not None and info.frame_upsample == "logits":  # straight to the frame, in the graph
            return nearest(bilinear(scores, info.frame_size).argmax(1)[0], (h, w)).numpy()
        scores = bilinear(scores, (ih, iw))  # the graph's upsample to the input size
        if info.input_format == "pixels":  # a pixels graph outputs probabilities
            scores = torch.softmax(scores, 1)
        if "logits" in info.output_names:  # the host brings the scores to the image
            return bilinear(scores, (h, w)).argmax(1)[0].to(torch.uint8).numpy()
        labels = scores.argmax(1)[0]
        if info.frame_size is not None:  # a bgr8 graph: to the frame, nearest
            labels = nearest(labels, info.frame_size)
        return nearest(labels, (h, w)).numpy()


# one row per input format and frame upsample, FP32 (the precisions only change numerics)
INDEPENDENT_ROWS = [ca.name(k, "fp32", 1) for k in ca.KINDS]


@pytest.mark.parametrize("artifact", INDEPENDENT_ROWS)
def test_segmenter_labels_are_pytorchs_by_an_independent_path(built, imgs, segmenter_labels, artifact):
    """The matrix's expected labels (Segmenter's on the ONNX) against PyTorch's computed in this file: a bug in
    the shared inference door (preprocessing, the host upsample of logits, the frame resize) would pass every
    cell that compares consumers with Segmenter, but not this one. FP32 on the same weights: near-ties only."""
    from pspnet_trt.artifacts import read_info

    info = read_info(built[artifact])
    for i, (got, image) in enumerate(zip(segmenter_labels[artifact], imgs)):
        want = independent_labels(info, image)
        assert got.shape == want.shape
        assert np.mean(got == want) >= 0.999, (artifact, i, np.mean(got == want))


def test_every_kind_was_built(built):
    from pspnet_trt.artifacts import read_info

    assert sorted(built) == sorted(ARTIFACTS)
    formats = {read_info(p).input_format for p in built.values()}
    assert formats == {"normalized", "bgr8", "pixels"}
    assert {read_info(p).precision for p in built.values()} == {"fp32", "fp16", "int8"}
    assert {read_info(p).batch for p in built.values()} == {1, None}


@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_segmenter_five_images_equals_one_at_a_time(built, imgs, segmenter_labels, artifact):
    from pspnet_trt.runtime import Segmenter

    with Segmenter.open(built[artifact], device="cpu") as seg:
        labels = seg.predict_batch(imgs)
    assert [m.shape for m in labels] == [im.shape[:2] for im in imgs]
    assert all(m.dtype == np.uint8 for m in labels)
    for got, want in zip(labels, segmenter_labels[artifact]):
        np.testing.assert_array_equal(got, want)


def test_fp32_kinds_agree_with_each_other(segmenter_labels):
    """At FP32 every labels-output kind is the same model with the same upsampling (labels, nearest): on the
    images at the bgr8 frame size (0, 1, 4) each agrees with the normalized artifact on >= 99.9 % of the pixels
    (float rounding at near-ties only); a kind fed the wrong input (normalised values into a pixels graph, a frame
    in another layout) agrees on a fraction. (A logits output is upsampled bilinearly before the argmax: another
    rule, checked against its own Segmenter labels in every other cell.)"""
    base = segmenter_labels[ca.name("normalized-labels", "fp32", 1)]
    for n, labels in segmenter_labels.items():
        if "_fp32_" not in n or "logits" in n:
            continue
        for i in (0, 1, 4):
            assert np.mean(labels[i] == base[i]) >= 0.999, (n, i)


@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_validate_scores_what_segmenter_predicts(built, few, segmenter_labels, artifact, tmp_path):
    from pspnet_trt.data import open_dataset
    from pspnet_trt.metrics import SegMetrics
    from pspnet_trt.runtime.ort import OrtBackend
    from pspnet_trt.validate import validate

    rng = np.random.default_rng(0)
    labels = []
    for i, im in enumerate(few):  # labels: random classes with a void border
        lab = rng.integers(0, 11, im.shape[:2]).astype(np.uint8)
        lab[:4] = 11
        labels.append(lab)
        for folder, array in (("test", im), ("testannot", lab)):
            (tmp_path / folder).mkdir(exist_ok=True)
            cv2.imwrite(str(tmp_path / folder / f"{i}.png"), array)
    dataset = open_dataset("camvid", tmp_path, "test")
    with OrtBackend(built[artifact], device="cpu") as art:
        report = validate(reference(art.info), [art], dataset, progress=False)
    want = SegMetrics(11)
    for pred, lab in zip(segmenter_labels[artifact][:3], labels):
        want.update(pred, lab)
    assert report.rows[1]["miou"] == pytest.approx(100 * want.miou, abs=1e-9)


@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_engine_check_without_data_compares_segmenter_labels(built, few, artifact):
    """The no-data check of `make engine` (labels agreement with PyTorch), an ONNX standing in for the engine:
    its agreement is the artifact's labels against PyTorch's computed as its graph works (independent_labels),
    near-ties aside; a reference that upsamples otherwise (labels for a frame-upsample-logits graph, or twice)
    is off by far more at FP32 (99.3 % for the shipped model)."""
    from pspnet_trt.metrics import Agreement
    from pspnet_trt.runtime import Segmenter
    from pspnet_trt.runtime.ort import OrtBackend
    from pspnet_trt.validate.check import check_agreement

    with OrtBackend(built[artifact], device="cpu") as art:
        result = check_agreement(reference(art.info), art, few, threshold=0.0)
        # a raw-frame artifact is checked on the frames its graph receives (the images at its frame size)
        frames = [cv2.resize(im, art.info.frame_size[::-1]) for im in few] if art.info.frame_size else few
        want = Agreement()
        for got, frame in zip(Segmenter(art).predict_batch(frames), frames):
            want.update(got, independent_labels(art.info, frame))
    assert result.agreement == pytest.approx(100 * want.value, abs=0.05)
    if "_fp32_" in artifact:  # same weights, same numerics up to float re-association
        assert result.agreement >= 99.9 and result.passed


@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_debug_feeds_each_runner_its_own_input(built, imgs, artifact, tmp_path):
    pytest.importorskip("polygraphy")
    from pspnet_trt.debug import debug_artifacts

    folder = tmp_path / "images"
    folder.mkdir()
    for i in (0, 2):
        cv2.imwrite(str(folder / f"{i}.png"), imgs[i])
    ref = built[ca.name("normalized-logits", "fp32", 1)]
    comparison, _ = debug_artifacts(str(ref), built[artifact], images_dir=folder, images=2)
    assert len(comparison.rows) > 20  # the network's tensors are compared, whatever the artifact's input
    if "_fp32_" in artifact:  # the same graph: nothing diverges (a wrongly fed runner gives O(1) errors)
        assert comparison.first_divergence is None
        assert max(r.rel_l2 for r in comparison.rows) < 1e-4


@pytest.mark.parametrize("artifact", [a for a in ARTIFACTS if a.endswith("_b1") or a.endswith("_dyn")])
def test_predict_writes_segmenter_labels(built, imgs, segmenter_labels, artifact, tmp_path):
    from pspnet_trt.cli import main

    paths = []
    for i in (0, 2):
        paths.append(tmp_path / f"img{i}.png")
        cv2.imwrite(str(paths[-1]), imgs[i])
    assert main(["predict", "--model", str(built[artifact]), "--device", "cpu", "--labels", "--out",
                 str(tmp_path / "out"), *map(str, paths)]) == 0
    for i, p in zip((0, 2), paths):
        (written,) = sorted((tmp_path / "out").glob(f"{p.stem}*labels*.png"))
        np.testing.assert_array_equal(cv2.imread(str(written), cv2.IMREAD_UNCHANGED), segmenter_labels[artifact][i])


@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_bench_runs_every_kind(built, artifact):
    from pspnet_trt.bench import measure
    from pspnet_trt.runtime.ort import OrtBackend

    with OrtBackend(built[artifact], device="cpu") as backend:
        batch = 2 if backend.info.batch is None else None
        result = measure(backend, iterations=2, warmup=1, batch=batch)
    assert result.batch == (batch or 1) and result.p50_ms > 0 and np.isfinite(result.throughput_ips)


# -- engine-only cells: the recording TensorRT double (calls and shapes) -----------------------------------

@pytest.fixture
def engine_double(monkeypatch):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_runtime_contracts import FakeCudart, fake_tensorrt, write_engine

    from pspnet_trt.runtime import cuda

    def make(info, tmp_path, max_batch):
        calls = []
        b = info.batch or -1
        io = {"images": (True, (b, 3, *info.input_size), "FLOAT"), "labels": (False, (b, *info.input_size), "UINT8")}
        cudart = FakeCudart(calls)
        monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(calls, io, cudart.memory, 3))
        monkeypatch.setattr(cuda, "runtime", lambda: cudart)
        return calls, write_engine(tmp_path, info, max_batch=max_batch)

    return make


@pytest.mark.parametrize("batch,max_batch,calls_of", [(None, 4, [4, 1]), (2, 2, [2, 2, 2])])
def test_segmenter_runs_an_engine_in_its_batch_range(engine_double, imgs, tmp_path, batch, max_batch, calls_of):
    """5 images on a dynamic 1..4 engine: calls of 4 and 1; on a static batch-2 engine: 3 calls of 2 (padded)."""
    from pspnet_trt.runtime import Segmenter

    info = ca.base_info().with_(output="labels", precision="fp16", batch=batch)
    calls, engine = engine_double(info, tmp_path, max_batch)
    with Segmenter.open(engine, device="cuda") as seg:
        labels = seg.predict_batch(imgs)
    executed = [c for c in calls if c[0] == "execute"]
    shapes = [c[2][0] for c in calls if c[0] == "set_input_shape"]
    assert len(executed) == len(calls_of)
    if batch is None:
        assert shapes == calls_of
    assert [m.shape for m in labels] == [im.shape[:2] for im in imgs] and all((m == 3).all() for m in labels)
