"""ONNX export: exact pool lowering, graph rules, metadata, FP32/FP16 parity with PyTorch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from pspnet_trt.deploy import METADATA_KEY, DeployInfo
from pspnet_trt.export import check_export, export_onnx
from pspnet_trt.export.deploy_model import DeployPSPNet
from pspnet_trt.export.onnx_export import FORBIDDEN_OPS, graph_summary
from pspnet_trt.export.pools import FixedAdaptiveAvgPool2d, adaptive_windows, uniform_kernel
from pspnet_trt.models import build_model, randomize_
from pspnet_trt.zoo import get_spec


@pytest.mark.parametrize("size,bins", [(s, b) for s in (1, 2, 5, 8, 13, 45, 60, 64, 65, 128) for b in (1, 2, 3, 6) if b <= s])
def test_fixed_pool_equals_adaptive_pool(size, bins):
    x = torch.randn(2, 3, size, size + 7)
    ours = FixedAdaptiveAvgPool2d(bins, (size, size + 7))
    torch.testing.assert_close(ours(x), nn.AdaptiveAvgPool2d(bins)(x), rtol=1e-6, atol=1e-6)


def test_uniform_detection():
    assert uniform_kernel(64, 2) == (32, 32)
    assert uniform_kernel(45, 2) == (23, 22)  # overlapping but uniform windows: still one AveragePool
    assert adaptive_windows(64, 3) == [(0, 22), (21, 43), (42, 64)]
    assert uniform_kernel(64, 3) == (22, 21)
    assert adaptive_windows(64, 6)[:3] == [(0, 11), (10, 22), (21, 32)]  # lengths 11, 12, 11
    assert uniform_kernel(64, 6) is None and uniform_kernel(8, 3) is None
    assert FixedAdaptiveAvgPool2d(6, (64, 128)).lowering == "MatMul"
    assert FixedAdaptiveAvgPool2d(2, (64, 128)).lowering == "AveragePool"


def test_deploy_model_equals_pytorch_model(tiny_model):
    x = torch.randn(1, 3, 97, 131)
    deploy = DeployPSPNet(tiny_model, (97, 131), output="both")
    with torch.no_grad():
        ref = nn.functional.interpolate(tiny_model(x), size=(97, 131), mode="bilinear", align_corners=False)
        out = deploy(x)
    torch.testing.assert_close(out["logits"], ref, rtol=1e-5, atol=1e-4)
    assert torch.equal(out["labels"], ref.argmax(1).to(torch.uint8))


def test_graph_is_static_folded_and_carries_metadata(tiny_onnx, tiny_info):
    model = onnx.load(tiny_onnx)
    ops = graph_summary(model)
    assert not set(ops) & FORBIDDEN_OPS, ops
    assert not any("Adaptive" in op or op == "Shape" for op in ops)
    assert ops["BatchNormalization"] == 0 and ops["ArgMax"] == 1
    assert ops["MatMul"] == 4  # bins 3 and 6 on an 8x16 feature map: two constant MatMuls each
    meta = {p.key: p.value for p in model.metadata_props}
    info = DeployInfo.from_json(meta[METADATA_KEY])
    assert info.input_size == (64, 128) and info.class_names == tiny_info.class_names
    assert info.normalization == tiny_info.normalization and info.palette == tiny_info.palette
    assert info.precision == "fp32" and info.package_version
    inputs = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert inputs == {"images": [1, 3, 64, 128]}
    outputs = {o.name: o.type.tensor_type.elem_type for o in model.graph.output}
    assert outputs == {"logits": onnx.TensorProto.FLOAT, "labels": onnx.TensorProto.UINT8}


@pytest.mark.parametrize("size", [(64, 128), (97, 131)])
def test_fp32_parity_real_width_r18(size, tmp_path):
    """Full-width R-18 model (the demo's), odd size included: max |dlogit| <= 1e-4 of the range, argmax identical."""
    model = randomize_(build_model("r18_os8_camvid"), 1)
    info = DeployInfo.from_spec(get_spec("r18_os8_camvid"), input_size=size, output="both")
    path = export_onnx(model, info, tmp_path / "m.onnx")
    report = check_export(model, path, num_random=2)
    assert report.relative_error <= 1e-4, report
    assert report.argmax_agreement >= 0.99999, report


def test_fp16_graph_agreement(tmp_path):
    model = randomize_(build_model("r18_os8_camvid"), 2)
    info = DeployInfo.from_spec(get_spec("r18_os8_camvid"), input_size=(96, 128), output="both")
    path = export_onnx(model, info, tmp_path / "m16.onnx", precision="fp16")
    graph = onnx.load(path)
    conv_weights = {i.name: i.data_type for i in graph.graph.initializer if i.dims and len(i.dims) == 4}
    assert conv_weights and set(conv_weights.values()) == {onnx.TensorProto.FLOAT16}
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # FP32 I/O
    report = check_export(model, path, num_random=2)
    assert report.precision == "fp16"
    # Random weights on random inputs have many near-tied logits; measured 99.6 % here. The 99.9 %
    # target on real images is checked by benchmarks/export_parity.py.
    assert report.argmax_agreement >= 0.99, report
    assert report.relative_error > 1e-6  # really FP16 arithmetic, not a copy of the FP32 graph


def test_dynamic_batch_and_int32_labels(tiny_model, tmp_path):
    from pspnet_trt.runtime.ort import OrtBackend

    info = DeployInfo.from_spec(get_spec("r18_os8_camvid"), input_size=(64, 96), output="labels", batch=None)
    path = export_onnx(tiny_model, info, tmp_path / "dyn.onnx", labels_dtype="int32")
    with OrtBackend(path) as backend:
        out = backend.run(np.random.default_rng(0).standard_normal((3, 3, 64, 96)).astype(np.float32))
    assert out["labels"].shape == (3, 64, 96)
    assert onnx.load(path).graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.INT32


def test_export_check_cli_detects_other_weights(tmp_path):
    run = [sys.executable, "-m", "pspnet_trt"]
    out = tmp_path / "cli.onnx"
    subprocess.run(run + ["export", "--model", "r18_os8_camvid", "--input-size", "64x96", "--output", "both",
                          "--random-weights", "--random-seed", "5", "--out", str(out)], check=True, capture_output=True)
    check = run + ["check-export", "--model", "r18_os8_camvid", "--onnx", str(out)]
    same = subprocess.run(check + ["--random-weights"], capture_output=True, text=True)  # seed 5 from the metadata
    assert same.returncode == 0, same.stderr
    assert "argmax agreement 100.0000 %" in same.stdout
    other = subprocess.run(check + ["--random-weights", "--random-seed", "6"], capture_output=True, text=True)
    assert other.returncode == 1, other.stdout
    # a random export checked without --random-weights (which would be the shipped checkpoint): one line, exit 2
    trained = subprocess.run(check, capture_output=True, text=True)
    assert trained.returncode == 2
    assert trained.stderr.strip().splitlines() == [
        f"pspnet-trt check-export: error: {out} was exported from random weights: add --random-weights (the seed is "
        "read from its metadata)"]


def test_parse_size_errors():
    from pspnet_trt.sizes import parse_size

    assert parse_size("512x1024") == (512, 1024)
    with pytest.raises(Exception, match="HxW"):
        parse_size("512")
    with pytest.raises(Exception, match="too small"):
        parse_size("16x16")


def test_failed_export_leaves_no_file(tiny_model, tiny_info, tmp_path, monkeypatch):
    from pspnet_trt.export import onnx_export

    def boom(*a, **k):
        raise RuntimeError("simulated failure after tracing")

    monkeypatch.setattr(onnx_export, "verify_graph", boom)
    with pytest.raises(RuntimeError):
        export_onnx(tiny_model, tiny_info, tmp_path / "x.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("size,bins", [(1, 2), (1, 3), (1, 6), (2, 6), (3, 6), (5, 6)])
def test_fixed_pool_is_exact_when_the_feature_map_is_smaller_than_the_bins(size, bins):
    """Issue 14 item 19: a 1-pixel side gave AveragePool stride 0 (a crash); every window is then that pixel."""
    x = torch.randn(2, 3, size, 9)
    ours = FixedAdaptiveAvgPool2d(bins, (size, 9))
    torch.testing.assert_close(ours(x), nn.AdaptiveAvgPool2d(bins)(x), rtol=1e-6, atol=1e-6)
    y = torch.randn(1, 2, size, size)
    torch.testing.assert_close(FixedAdaptiveAvgPool2d(bins, (size, size))(y), nn.AdaptiveAvgPool2d(bins)(y))


def test_export_with_a_one_pixel_feature_map_matches_pytorch(tiny_model, tmp_path):
    """8x64 input at output stride 8: the PPM sees a 1x8 feature map."""
    import onnxruntime as ort

    info = DeployInfo.from_spec(get_spec("r18_os8_camvid"), input_size=(8, 64), output="logits")
    out = export_onnx(tiny_model, info, tmp_path / "thin.onnx")
    x = torch.randn(1, 3, 8, 64)
    with torch.no_grad():
        ref = DeployPSPNet(tiny_model, (8, 64), output="logits")(x)["logits"].numpy()
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch", ["0", "-2"])
def test_export_refuses_a_batch_below_one_in_one_line(batch, tmp_path):
    """Issue 14 item 12."""
    run = subprocess.run([sys.executable, "-m", "pspnet_trt", "export", "--model", "r18_os8_camvid", "--input-size",
                          "64x64", "--batch", batch, "--out", str(tmp_path / "b.onnx")], capture_output=True, text=True)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().count("\n") == 0 and "--batch" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "b.onnx").exists()


def test_cast_round_trip_pass_drops_only_lossless_integer_widenings():
    """int32 -> INT64 -> int32 (torch's trunc division) goes; float -> INT64 -> float (a truncation) stays."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from pspnet_trt.export.onnx_export import drop_cast_round_trips

    def cast(name, src, dst, to):
        return helper.make_node("Cast", [src], [dst], name=name, to=to)

    nodes = [helper.make_node("Identity", ["f"], ["f1"], name="f_in"),  # an inner float tensor, typed by inference
             cast("", "f1", "f64", TensorProto.INT64), cast("", "f64", "f_back", TensorProto.FLOAT),  # unnamed too
             cast("i_a", "i", "i64", TensorProto.INT64), cast("i_b", "i64", "i_back", TensorProto.INT32),
             cast("i_c", "i_back", "i64_2", TensorProto.INT64), cast("i_d", "i64_2", "i_back2", TensorProto.INT32),
             helper.make_node("Identity", ["f_back"], ["f_out"], name="f_id"),
             helper.make_node("Identity", ["i_back2"], ["i_out"], name="i_id")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("f", TensorProto.FLOAT, [3]),
                                           helper.make_tensor_value_info("i", TensorProto.INT32, [3])],
                              [helper.make_tensor_value_info("f_out", TensorProto.FLOAT, [3]),
                               helper.make_tensor_value_info("i_out", TensorProto.INT32, [3])])
    model = drop_cast_round_trips(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    onnx.checker.check_model(model)
    assert [n.name for n in model.graph.node] == ["f_in", "", "", "f_id", "i_id"]  # the float pair stays
    out = ort.InferenceSession(model.SerializeToString()).run(
        None, {"f": np.array([2.7, -1.5, 0.4], np.float32), "i": np.array([5, -7, 9], np.int32)})
    assert out[0].tolist() == [2.0, -1.0, 0.0] and out[1].tolist() == [5, -7, 9]
