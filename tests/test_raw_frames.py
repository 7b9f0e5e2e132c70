"""Raw-frame artifacts (issue 15): uint8 BGR frames in, labels at the frame size out, preprocessing in the graph."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

FRAME = (96, 160)  # frame size: 1.5 x 1.25 the 64x128 input, so the in-graph resize is a real, non-integer one


def _image(hw, seed=0):
    """A smooth-ish BGR image (blurred noise), so that resizing is not dominated by aliasing."""
    rng = np.random.default_rng(seed)
    im = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    return cv2.GaussianBlur(im, (0, 0), 2.0)


def _export(model, info, tmp_path, name, **fmt):
    from pspnet_trt.export import export_onnx

    return export_onnx(model, info.with_(output="labels", **fmt), tmp_path / f"{name}.onnx")


@pytest.fixture(scope="module")
def bgr8_onnx(tiny_model, tiny_info, tmp_path_factory) -> Path:
    return _export(tiny_model, tiny_info, tmp_path_factory.mktemp("raw"), "bgr8", input_format="bgr8",
                   frame_size=FRAME)


def _with_output(path, tensor, out):
    """A copy of ``path`` that also outputs the intermediate ``tensor`` (for numeric checks of the graph)."""
    import onnx

    m = onnx.load(str(path))
    m.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    onnx.save(m, str(out))
    return out


def _network_input(model) -> str:
    """The tensor the first Conv reads: the end of the in-graph preprocessing."""
    return next(n for n in model.graph.node if n.op_type == "Conv").input[0]


# Where ONNX itself requires INT64: the shape operands of Reshape, Slice and Resize (input index).
INT64_OPERANDS = {("Reshape", 1), ("Slice", 1), ("Slice", 2), ("Slice", 3), ("Slice", 4), ("Resize", 3)}


def _int64(path):
    """(INT64 tensors computed by a node -> that node, [(op type, input index, name) of every INT64 operand read],
    the element types the preprocessing's nodes compute)."""
    import onnx

    g = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.value_info, *g.output, *g.input)}
    types.update({i.name: i.data_type for i in g.initializer})
    computed = {o: n for n in g.node for o in n.output if types.get(o) == onnx.TensorProto.INT64}
    reads = [(n.op_type, k, name) for n in g.node for k, name in enumerate(n.input)
             if types.get(name) == onnx.TensorProto.INT64]
    preprocess = {onnx.TensorProto.DataType.Name(types[o]) for n in g.node if n.name.startswith("/preprocess/")
                  for o in n.output}
    return computed, reads, preprocess


def _assert_int64_as_the_readme_says(path, dynamic_batch=False):
    """README ("Raw-frame artifacts"): the one INT64 tensor a static bgr8 graph computes is ArgMax's output, cast
    at once (to the label type, or to FP32 for the nearest upsample); the other INT64 values are the constant
    operands Reshape, Slice and Resize require; a --dynamic-batch graph adds Shape/Slice/Concat for the Resize
    sizes. The preprocessing computes no INT64."""
    computed, reads, preprocess = _int64(path)
    argmax = {o for o, n in computed.items() if n.op_type == "ArgMax"}
    assert len(argmax) == 1, computed
    shape_ops = {"Shape", "Slice", "Concat"} if dynamic_batch else set()
    assert {n.op_type for o, n in computed.items() if o not in argmax} <= shape_ops, sorted(computed)
    assert not [o for o, n in computed.items() if n.name.startswith("/preprocess/")]
    assert preprocess <= {"UINT8", "FLOAT", "INT32"}, preprocess
    assert {(op, k) for op, k, name in reads if name in argmax} == {("Cast", 0)}
    shape_arithmetic = {("Slice", 0)} | {("Concat", k) for k in range(8)} if dynamic_batch else set()
    others = {(op, k) for op, k, name in reads if name not in argmax}
    assert others <= INT64_OPERANDS | shape_arithmetic, others


def test_bgr8_graph_io_ops_and_metadata(bgr8_onnx):
    import onnx
    import onnxruntime as ort

    from pspnet_trt.artifacts import read_onnx_info
    from pspnet_trt.export.onnx_export import FORBIDDEN_OPS

    m = onnx.load(str(bgr8_onnx))
    ops = {n.op_type for n in m.graph.node}
    assert not ops & (FORBIDDEN_OPS | {"Shape"}), ops
    preprocess = {n.op_type for n in m.graph.node if n.name.startswith("/preprocess/")}
    assert "Resize" not in preprocess and "MatMul" in preprocess, preprocess  # OpenCV's integer resize, as MatMuls
    s = ort.InferenceSession(str(bgr8_onnx), providers=["CPUExecutionProvider"])
    (inp,), (out,) = s.get_inputs(), s.get_outputs()
    assert (inp.type, inp.shape) == ("tensor(uint8)", [1, *FRAME, 3])
    assert (out.type, out.shape) == ("tensor(uint8)", [1, *FRAME])
    info = read_onnx_info(bgr8_onnx)
    assert (info.input_format, info.frame_size, info.input_size, info.output_size) == ("bgr8", FRAME, (64, 128), FRAME)
    assert info.input_shape(2) == (2, *FRAME, 3) and info.input_dtype == "uint8"
    _assert_int64_as_the_readme_says(bgr8_onnx)


def test_bgr8_preprocessing_is_the_host_path_bit_for_bit(bgr8_onnx, tiny_model, tiny_info, tmp_path):
    """The graph's network input equals the host path's exactly: cv2.resize INTER_LINEAR of the uint8 frame
    (OpenCV's fixed-point arithmetic, reproduced in the graph), BGR->RGB, (x - mean) / std. A float bilinear
    Resize missed it by up to one grey level (0.69 on this test's frame). A frame of the network size has no
    resize in the graph (only the channel flip, which the resize weights fold in otherwise): run that graph too."""
    import onnx
    import onnxruntime as ort

    from pspnet_trt.artifacts import read_onnx_info
    from pspnet_trt.preprocess import make_batch

    same = _export(tiny_model, tiny_info, tmp_path, "same_size", input_format="bgr8", frame_size=tiny_info.input_size)
    assert "MatMul" not in {n.op_type for n in onnx.load(str(same)).graph.node if n.name.startswith("/preprocess/")}
    noise = np.random.default_rng(2)
    for path in (bgr8_onnx, same):
        info = read_onnx_info(path)
        probe = _with_output(path, _network_input(onnx.load(str(path))), tmp_path / "probe.onnx")
        frames = [_image(info.frame_size, 1), noise.integers(0, 256, (*info.frame_size, 3), dtype=np.uint8)]
        session = ort.InferenceSession(str(probe))
        for frame in frames:
            got = session.run(None, {"images": frame[None]})[1][0]
            host = make_batch([frame], info.input_size, info.normalization)[0]
            assert got.shape == host.shape == (3, *info.input_size)
            assert np.array_equal(got, host), (path.name, np.abs(got - host).max())


@pytest.mark.parametrize("frame_hw, net_hw", [
    ((96, 160), (64, 128)), ((90, 90), (30, 30)),  # 1.5 x 1.25; 3x: sampling points on source pixels
    ((64, 128), (96, 160)), ((50, 128), (64, 128)),  # upscales (per-block matrices), one axis unchanged
    ((37, 53), (29, 61)), ((64, 100), (64, 128)),  # coprime sizes (one block), rows unchanged
])
def test_in_graph_resize_is_opencv_inter_linear_bit_for_bit(frame_hw, net_hw, tmp_path):
    """The resize alone, exported to ONNX and run by ONNX Runtime, against cv2.resize on random uint8 frames
    (worst case for rounding: no smoothness), including the edges and the block borders."""
    import onnxruntime as ort
    import torch

    from pspnet_trt.export.frame_resize import Cv2LinearResize

    frames = np.random.default_rng(0).integers(0, 256, (2, *frame_hw, 3), dtype=np.uint8)
    want = np.stack([cv2.resize(f, net_hw[::-1], interpolation=cv2.INTER_LINEAR) for f in frames])
    x = torch.from_numpy(frames).float()
    for flip in (False, True):
        module = Cv2LinearResize(frame_hw, net_hw, flip=flip).eval()
        expected = want[..., ::-1] if flip else want
        assert np.array_equal(module(x).numpy(), expected)
        path = tmp_path / f"resize_{flip}.onnx"
        torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                          dynamic_axes={"x": {0: "n"}})
        got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
        assert np.array_equal(got, expected)


@pytest.mark.parametrize("frame_upsample", ["labels", "logits"])
def test_bgr8_with_a_dynamic_batch_exports_static_ops_and_runs_two_frames(tiny_model, tiny_info, tmp_path,
                                                                         frame_upsample):
    """--dynamic-batch bgr8 graphs: no Gather/If (the label upsample's squeeze made them; a Shape for the
    Resize sizes stays, as in every dynamic-batch graph), and a batch of two frames gives each frame's own labels."""
    import onnx
    import onnxruntime as ort

    from pspnet_trt.export.onnx_export import FORBIDDEN_OPS

    path = _export(tiny_model, tiny_info.with_(batch=None), tmp_path, "dyn", input_format="bgr8",
                   frame_size=(37, 53), frame_upsample=frame_upsample)
    assert not {n.op_type for n in onnx.load(str(path)).graph.node} & (FORBIDDEN_OPS | {"If"})
    _assert_int64_as_the_readme_says(path, dynamic_batch=True)
    frames = np.stack([_image((37, 53), 7), _image((37, 53), 8)])
    s = ort.InferenceSession(str(path))
    both = s.run(None, {"images": frames})[0]
    assert both.shape == (2, 37, 53) and both.dtype == np.uint8
    for i in range(2):
        assert np.array_equal(both[i], s.run(None, {"images": frames[i:i + 1]})[0][0])


def test_bgr8_labels_match_host_path(tiny_model, tiny_info, tmp_path):
    """frame_upsample='labels' at frame size == input size is the normalized graph fed by the host path."""
    import onnxruntime as ort

    from pspnet_trt.preprocess import make_batch

    frame = _image((64, 128), 3)
    raw = _export(tiny_model, tiny_info, tmp_path, "same", input_format="bgr8", frame_size=(64, 128),
                  frame_upsample="labels")
    ref = _export(tiny_model, tiny_info, tmp_path, "ref")
    got = ort.InferenceSession(str(raw)).run(None, {"images": frame[None]})[0]
    want = ort.InferenceSession(str(ref)).run(None, {"images": make_batch([frame], (64, 128), tiny_info.normalization)})[0]
    assert got.dtype == np.uint8 and got.shape == (1, 64, 128)
    assert (got == want).mean() >= 0.999


def test_pixels_format_normalizes_in_graph(tiny_model, tiny_info, tmp_path):
    import onnxruntime as ort

    from pspnet_trt.preprocess import make_batch, pixels_batch

    pix = _export(tiny_model, tiny_info, tmp_path, "pix", input_format="pixels")
    ref = _export(tiny_model, tiny_info, tmp_path, "ref")
    frames = [_image((64, 128), 5)]
    s = ort.InferenceSession(str(pix))
    assert (s.get_inputs()[0].type, s.get_inputs()[0].shape) == ("tensor(float)", [1, 3, 64, 128])
    got = s.run(None, {"images": pixels_batch(frames, (64, 128), tiny_info.normalization)})[0]
    want = ort.InferenceSession(str(ref)).run(None, {"images": make_batch(frames, (64, 128), tiny_info.normalization)})[0]
    assert (got == want).mean() >= 0.9999


def test_fp16_graph_keeps_preprocessing_fp32(tiny_model, tiny_info, tmp_path):
    import onnx
    import onnxruntime as ort

    from pspnet_trt.export import export_onnx

    path = export_onnx(tiny_model, tiny_info.with_(output="labels", input_format="bgr8", frame_size=FRAME),
                       tmp_path / "fp16.onnx", precision="fp16")
    m = onnx.load(str(path))
    inits = {i.name: i.data_type for i in m.graph.initializer}
    pre = [n for n in m.graph.node if n.name.startswith("/preprocess/")]
    assert {n.op_type for n in pre} >= {"Cast", "Transpose", "MatMul", "Sub", "Div"}
    for n in pre:  # mean/std constants stay FP32
        assert all(inits[i] != onnx.TensorProto.FLOAT16 for i in n.input if i in inits), n.name
    types = {v.name: v.type.tensor_type.elem_type for v in onnx.shape_inference.infer_shapes(m).graph.value_info}
    computed = [types[o] for n in pre for o in n.output if o in types and n.op_type != "Cast"]
    assert set(computed) == {onnx.TensorProto.FLOAT, onnx.TensorProto.INT32}, set(computed)  # no FP16, no INT64
    to_fp16 = [n for n in pre if n.op_type == "Cast" and types.get(n.output[0]) == onnx.TensorProto.FLOAT16]
    assert len(to_fp16) == 1  # one Cast to FP16, at the network
    assert {types[n.output[0]] for n in pre if n.op_type == "MatMul"} == {onnx.TensorProto.FLOAT}
    first_conv = next(n for n in m.graph.node if n.op_type == "Conv")
    assert inits[first_conv.input[1]] == onnx.TensorProto.FLOAT16
    out = ort.InferenceSession(str(path)).run(None, {"images": _image(FRAME)[None]})[0]
    assert out.shape == (1, *FRAME) and out.dtype == np.uint8


@pytest.mark.parametrize("kwargs, needle", [
    ({"input_format": "bgr8"}, "--frame-size"),
    ({"input_format": "normalized", "frame_size": (96, 160)}, "--frame-size is for"),
    ({"input_format": "bgr8", "frame_size": (96, 160), "output": "logits"}, "drop --output"),
    ({"input_format": "rgb"}, "--input-format must be"),
])
def test_raw_frame_options_errors(kwargs, needle):
    from pspnet_trt.errors import UserError
    from pspnet_trt.export.onnx_export import raw_frame_options

    with pytest.raises(UserError, match=needle):
        raw_frame_options(**kwargs)


def test_segmenter_on_raw_frames(bgr8_onnx, caplog):
    import onnxruntime as ort

    from pspnet_trt.runtime import Segmenter

    frame = _image(FRAME, 7)
    want = ort.InferenceSession(str(bgr8_onnx)).run(None, {"images": frame[None]})[0][0]
    with Segmenter.open(bgr8_onnx) as seg:
        with caplog.at_level(logging.DEBUG):
            got = seg.predict(frame)
        assert not [r for r in caplog.records if "resized on the host" in r.message]
        np.testing.assert_array_equal(got, want)
        other = _image((120, 200), 8)
        with caplog.at_level(logging.DEBUG):
            labels = seg.predict(other)
        assert labels.shape == (120, 200) and labels.dtype == np.uint8
        assert len([r for r in caplog.records if "resized on the host" in r.message]) == 1
        batch = seg.predict_batch([frame, other])
        np.testing.assert_array_equal(batch[0], want)
        np.testing.assert_array_equal(batch[1], labels)


def test_segmenter_fills_the_backends_own_input_buffer(bgr8_onnx):
    """predict_batch writes each frame once, into the buffer the backend hands out (TensorRT: its host
    staging buffer, so run() copies nothing more on the host)."""
    from pspnet_trt.runtime import Segmenter
    from pspnet_trt.runtime.ort import OrtBackend

    class Recording(OrtBackend):
        def input_buffer(self, batch):
            self.handed = super().input_buffer(batch)
            return self.handed

        def run(self, batch):
            self.got = batch
            return super().run(batch)

    backend = Recording(bgr8_onnx)
    frame = _image(FRAME, 9)
    Segmenter(backend).predict(frame)
    assert backend.got is backend.handed
    np.testing.assert_array_equal(backend.got[0], frame)


def test_backend_refuses_float_input_for_bgr8(bgr8_onnx):
    from pspnet_trt.runtime.ort import OrtBackend

    backend = OrtBackend(bgr8_onnx)
    with pytest.raises(ValueError, match="uint8"):
        backend.run(np.zeros((1, *FRAME, 3), np.float32))
    with pytest.raises(ValueError, match="bgr8 batch of shape Nx96x160x3"):
        backend.run(np.zeros((1, 3, 64, 128), np.uint8))


def test_quantize_accepts_raw_frame_graph_with_qdq_where_it_is_today(bgr8_onnx, tiny_onnx, tmp_path):
    """The INT8 pass calibrates a bgr8 graph on uint8 frames, puts no Q/DQ in the preprocessing, and quantizes
    the same Conv/Add nodes as for the normalized graph; check_placement accepts it."""
    import onnx

    from pspnet_trt.quant import (
        CalibrationList,
        check_placement,
        make_calibration_list,
        qdq_summary,
        quantize_onnx,
    )

    sample = Path(__file__).resolve().parents[1] / "samples" / "camvid"
    cal = CalibrationList.read(make_calibration_list("r18_os8_camvid", sample, "train", 2, seed=0,
                                                     out=tmp_path / "cal.txt"), sample)
    raw = onnx.load(str(quantize_onnx(bgr8_onnx, cal, tmp_path / "raw_int8.onnx")))
    ref = onnx.load(str(quantize_onnx(tiny_onnx, cal, tmp_path / "ref_int8.onnx")))
    check_placement(raw)
    assert qdq_summary(raw) == qdq_summary(ref)
    producers = {o: n for n in raw.graph.node for o in n.output}
    qdq = ("QuantizeLinear", "DequantizeLinear")
    pre = [n for n in raw.graph.node if n.name.startswith("/preprocess/") and n.op_type not in qdq]
    assert {n.op_type for n in pre} >= {"Cast", "Transpose", "MatMul", "Add", "Sub", "Div"}
    assert not [n for n in pre for i in n.input if i in producers and producers[i].op_type in qdq]
    count = [sum(n.op_type in qdq for n in m.graph.node) for m in (raw, ref)]
    assert count[0] == count[1]  # the first Conv's input Q/DQ reads the preprocessing's output, as it reads `images`
    import onnxruntime as ort

    out = ort.InferenceSession(str(tmp_path / "raw_int8.onnx")).run(None, {"images": _image(FRAME)[None]})[0]
    assert out.shape == (1, *FRAME) and out.dtype == np.uint8


def test_keep_ratio_letterboxes_and_cuts_labels_back(tiny_onnx, tiny_info):
    """resize='keep_ratio': a 64x64 image goes into the left 64x64 of the 64x128 input, the rest is the mean
    colour, and the labels are cut back out; 'stretch' resizes the image to 64x128 instead."""
    from pspnet_trt.preprocess import make_batch, mean_bgr
    from pspnet_trt.runtime import Segmenter
    from pspnet_trt.runtime.ort import OrtBackend
    from pspnet_trt.runtime.segmenter import default_resize

    image = _image((64, 64), 11)
    canvas = np.empty((64, 128, 3), np.uint8)
    canvas[:] = mean_bgr(tiny_info.normalization)
    canvas[:, :64] = image
    backend = OrtBackend(tiny_onnx)
    want = backend.run(make_batch([canvas], (64, 128), tiny_info.normalization))["logits"][0][:, :, :64].argmax(0)
    got = Segmenter(backend, resize="keep_ratio").predict(image)
    assert got.shape == (64, 64)
    np.testing.assert_array_equal(got, want)
    stretched = Segmenter(backend, resize="stretch").predict(image)
    assert stretched.shape == (64, 64) and (stretched != got).any()
    assert default_resize(tiny_info) == "stretch"  # CamVid: tested at its native size (= deploy size)
    from pspnet_trt.deploy import DeployInfo
    from pspnet_trt.zoo import get_spec

    assert default_resize(DeployInfo.from_spec(get_spec("r50_os8_voc"))) == "keep_ratio"  # sssegmentation keep_ratio
    from pspnet_trt.errors import UserError

    with pytest.raises(UserError, match="resize must be one of"):
        Segmenter(backend, resize="crop")


def test_keep_ratio_on_raw_frames(bgr8_onnx):
    from pspnet_trt.preprocess import letterbox, mean_bgr
    from pspnet_trt.runtime import Segmenter

    seg = Segmenter.open(bgr8_onnx, resize="keep_ratio")
    image = _image((48, 160), 12)  # wider than the 96x160 frame: fills the top half
    canvas, inner = letterbox(image, FRAME, mean_bgr(seg.info.normalization))
    assert inner == (48, 160)
    want = seg.backend.run(canvas[None])["labels"][0][:48]
    np.testing.assert_array_equal(seg.predict(image), want)


def test_validator_and_bench_take_raw_frame_artifacts(tiny_model, tiny_info, bgr8_onnx, tiny_onnx, tmp_path):
    """The validator feeds a bgr8 artifact each image at its frame size (its own input), next to a normalized
    artifact fed the shared host preprocessing; bench times it on uint8 frames.

    The agreement bar comes from what a broken feed gives, computed here: an output that ignores the image (the
    reference's most frequent label everywhere) or another function (this architecture with other random
    weights); the baseline is the better of the two. A bgr8 artifact whose frame is the images' own size
    (360x480, scores brought to the frame bilinearly, as the host does for logits) computes the reference's
    function from the same pixels (the in-graph resize is cv2.resize bit for bit), so it must agree at least
    halfway from that baseline to 100 % (measured 99.9+ %; the same artifact fed BGR as RGB: 67 %, below the
    bar). The 96x160 artifact resizes twice (image -> frame on the host, frame -> 64x128 in the graph), which
    moves many near-tied labels of this random model (72 % measured): it must beat the baseline."""
    from pspnet_trt.bench import measure
    from pspnet_trt.data import open_dataset
    from pspnet_trt.models import create_model
    from pspnet_trt.runtime.ort import OrtBackend
    from pspnet_trt.runtime.torch_backend import TorchBackend
    from pspnet_trt.validate import predict_whole, validate

    sample = Path(__file__).resolve().parents[1] / "samples" / "camvid"
    dataset = open_dataset("camvid", sample, "test")
    images = [dataset[i].image for i in range(2)]
    native = _export(tiny_model, tiny_info, tmp_path, "native", input_format="bgr8", frame_size=images[0].shape[:2],
                     frame_upsample="logits")
    raw, exact, norm = OrtBackend(bgr8_onnx), OrtBackend(native), OrtBackend(tiny_onnx)
    reference = TorchBackend(tiny_model, tiny_info.with_(output="logits"))
    other = create_model("r18_os8_camvid", random_weights=True, seed=1, ppm_channels=16, aux_channels=16)
    unrelated = TorchBackend(other, tiny_info.with_(output="logits"))
    report = validate(reference, [raw, exact, norm, unrelated], dataset, limit=2, progress=False,
                      labels=["bgr8 96x160", "bgr8 360x480", "normalized", "unrelated"])
    assert report.images == 2
    agree = {r["backend"]: r["agreement"] for r in report.rows[1:]}
    ref_labels = np.concatenate([predict_whole(reference, im, im.shape[:2]).ravel() for im in images])
    majority = 100 * np.bincount(ref_labels).max() / ref_labels.size
    baseline = max(majority, agree["unrelated"])
    bar = baseline + 0.5 * (100 - baseline)
    assert agree["bgr8 360x480"] > bar and agree["normalized"] > bar, (agree, majority, bar)
    assert agree["bgr8 96x160"] > baseline, (agree, majority)
    latency = measure(raw, iterations=2, warmup=1)
    assert latency.p50_ms > 0 and latency.batch == 1


def test_in_graph_resize_warns_when_the_sizes_make_it_costly(caplog):
    """Coprime sizes leave one dense matrix per axis: 1080x1920 -> 473x473 is 13.6 GMAC a frame; 2x is 31 MMAC."""
    from pspnet_trt.export.frame_resize import Cv2LinearResize

    with caplog.at_level(logging.WARNING, logger="pspnet_trt.export.frame_resize"):
        cheap = Cv2LinearResize((1024, 2048), (512, 1024))
        assert not caplog.records and cheap.macs() == 31_457_280
        costly = Cv2LinearResize((1080, 1920), (473, 473))
    assert costly.macs() > 13e9
    assert len(caplog.records) == 1 and "13.6 GMAC" in caplog.text and "rows 1, columns 1" in caplog.text
