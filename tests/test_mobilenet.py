"""PSPNet-MobileNetV2-D8 (the zoo's mv2_os8_* entries): sssegmentation's logits, its files and release folder, its
ImageNet file, the exact export and the INT8 placement of depthwise convs and ReLU6 (Clip).

How the reference (tests/data/ssseg_reference_mv2.npz + .json sidecar) was produced: sssegmentation's own code at
commit eb1878c112402e86a92ee6958778272065bf59b9 (v1.7.0), torch 2.13.0+cpu, CPU, as for
tests/data/ssseg_reference.npz (see test_ssseg_parity.py): ``ConfigParser`` on
``ssseg/configs/mobilenetv2/pspnet_mobilenetv2os8_{voc,ade20k,cityscapes}.py``, ``norm_cfg`` BatchNorm2d instead
of SyncBatchNorm, backbone ``pretrained=False``, ``BuildSegmentor(cfg, mode='TEST').eval()``, its state dict filled
with ``ssseg_weights.make_weights`` (seed 7, conv N(0, 2/fan_in)) by ``load_state_dict(strict=True)``. Inputs: the
64x97 ``input`` of ssseg_reference.npz, and for Cityscapes a seeded uint8 BGR 256x512 image (stored) through
sssegmentation's ``Normalize(to_rgb=True)``. Stored: the raw ``seg_logits`` (1/8) and the labels of its test path
(bilinear, align_corners=False, to the input size, argmax). The generator ran sssegmentation's code (packages its
registry imports were stubs; PSPNet never called them), so neither is part of this repository. Our logits were
bit-identical at 64x97 on that machine (oneDNN off).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from ssseg_weights import state_dict_for

from pspnet_trt import checkpoints as ck
from pspnet_trt.cli import main as cli_main
from pspnet_trt.deploy import DeployInfo
from pspnet_trt.models import BACKBONES, build_model, upsample_logits
from pspnet_trt.models.mobilenet import MobileNetV2
from pspnet_trt.preprocess import normalize
from pspnet_trt.zoo import ZOO, get_spec

DATA = Path(__file__).parent / "data"
REF = np.load(DATA / "ssseg_reference_mv2.npz")
META = json.loads((DATA / "ssseg_reference_mv2.json").read_text())
SMALL = np.load(DATA / "ssseg_reference.npz")["input"]  # 1x3x64x97, sssegmentation's Normalize
REL_TOL = 1e-4
STORE = "https://github.com/SegmentationBLWX/modelstore/releases/download"
CLI = [sys.executable, "-m", "pspnet_trt"]


def logits(model: torch.nn.Module, x: np.ndarray) -> torch.Tensor:
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False  # the reference was computed with the plain CPU convs
    try:
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(x)))
    finally:
        torch.backends.mkldnn.enabled = enabled


def ssseg_model(name: str) -> torch.nn.Module:
    model = build_model(name)
    model.load_state_dict(state_dict_for(model, META["weight_seed"], 2.0), strict=True)
    return model.eval()


def big_input() -> np.ndarray:
    return normalize(REF["mv2/image_bgr_256x512"], get_spec("mv2_os8_cityscapes").normalization)[None]


def span(t: torch.Tensor) -> float:
    return float(t.max() - t.min())


# ---------------------------------------------------------------------------------------------------------------
# The model: sssegmentation's logits, its checkpoint files
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["voc", "ade20k", "cityscapes"])
def test_logits_equal_sssegmentation(dataset, tmp_path):
    """A checkpoint file in sssegmentation's layout ({'model': state_dict}) loads strictly through
    build_model + load_checkpoint and gives sssegmentation's logits and labels."""
    name = f"mv2_os8_{dataset}"
    path = tmp_path / "ssseg.pth"
    torch.save({"cur_epoch": 60, "model": ssseg_model(name).state_dict()}, path)
    model = ck.load_checkpoint(build_model(name), path)
    ours, ref = logits(model, SMALL), torch.from_numpy(REF[f"{name}/logits"])
    assert tuple(ours.shape) == tuple(ref.shape) == tuple(META["configs"][name]["logits_shape"])
    assert float((ours - ref).abs().max()) <= REL_TOL * span(ref)
    labels = upsample_logits(ours, SMALL.shape[-2:]).argmax(1)[0].numpy()
    assert (labels == REF[f"{name}/labels"]).mean() >= 0.999


def test_the_comparison_discriminates():
    """ReLU instead of ReLU6, or output stride 16, miss sssegmentation's logits by far more than the tolerance."""
    name = "mv2_os8_cityscapes"
    ref = torch.from_numpy(REF[f"{name}/logits"])
    model = ssseg_model(name)
    for m in model.backbone_net.modules():
        if isinstance(m, torch.nn.ReLU6):
            m.max_val = float("inf")
    assert float((logits(model, SMALL) - ref).abs().max()) > 100 * REL_TOL * span(ref)
    os16 = build_model(name)
    os16.backbone_net = MobileNetV2(output_stride=16)
    os16.load_state_dict(state_dict_for(os16, META["weight_seed"], 2.0), strict=True)
    out = F.interpolate(logits(os16.eval(), SMALL), size=ref.shape[-2:], mode="bilinear", align_corners=False)
    assert float((out - ref).abs().max()) > 100 * REL_TOL * span(ref)


def test_export_at_256x512_matches_sssegmentations_upsampled_logits(tmp_path):
    """The exact export (fixed pools) of the Cityscapes model gives sssegmentation's logits upsampled to the
    input within 2e-4 of their range; no Gather/Where/Shape/NonZero/Loop/If; ReLU6 is a Clip."""
    import onnxruntime as ort

    from pspnet_trt.export import export_onnx
    from pspnet_trt.export.onnx_export import graph_summary

    name = "mv2_os8_cityscapes"
    info = DeployInfo.from_spec(get_spec(name), input_size=(256, 512), output="both")
    path = export_onnx(ssseg_model(name), info, tmp_path / "mv2.onnx")
    ops = graph_summary(onnx.load(path))
    assert not {"Gather", "Where", "Shape", "NonZero", "Loop", "If"} & set(ops), ops
    assert ops["Clip"] == 34 and ops["BatchNormalization"] == 0  # 34 ReLU6 of the backbone, BN folded
    x = big_input()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(["logits"], {session.get_inputs()[0].name: x})[0]
    ref = torch.from_numpy(REF[f"{name}@256x512/logits"])
    ref_up = F.interpolate(ref, size=(256, 512), mode="bilinear", align_corners=False).numpy()
    assert np.abs(out - ref_up).max() <= 2e-4 * span(ref)
    assert (out.argmax(1)[0] == REF[f"{name}@256x512/labels"]).mean() >= 0.999


@pytest.mark.parametrize("name", ["mv2_os8_voc", "mv2_os8_ade20k", "mv2_os8_cityscapes", "mv2_os8_camvid"])
def test_entries(name):
    s = get_spec(name)
    assert s.backbone == "mobilenetv2" and s.output_stride == 8 and BACKBONES[s.backbone].channels == (96, 320)
    if s.config:
        assert s.config == f"pspnet_{name.replace('mv2_os8', 'mobilenetv2os8')}"
        assert (s.ppm_channels, s.aux_channels, s.release) == (512, 512, "ssseg_mobilenet") and s.sha256 is None
    else:
        assert s.shipped_checkpoint == "samples/mv2_os8_camvid_camvid.pth" and s.urls == ()
    assert {n: ZOO[n].published_miou for n in ZOO if n.startswith("mv2_os8_") and ZOO[n].config} == {
        "mv2_os8_voc": 68.40, "mv2_os8_ade20k": 35.09, "mv2_os8_cityscapes": 73.64}


# ---------------------------------------------------------------------------------------------------------------
# Downloads: the entry's own release folder; one flat mirror folder for every entry
# ---------------------------------------------------------------------------------------------------------------


def test_urls_are_in_the_mobilenet_release_folder(monkeypatch):
    monkeypatch.delenv("PSPNET_TRT_MODEL_BASE_URL", raising=False)
    assert get_spec("mv2_os8_voc").urls == (f"{STORE}/ssseg_mobilenet/pspnet_mobilenetv2os8_voc.pth",
                                            f"{STORE}/ssseg_mobilenet/pspnet_mobilenetv2os8_voc_train.pth")
    assert get_spec("r50_os8_voc").url == f"{STORE}/ssseg_pspnet/pspnet_resnet50os8_voc.pth"  # unchanged


def test_offline_download_is_one_line_naming_the_mobilenet_url(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("PSPNET_TRT_MODEL_BASE_URL", raising=False)
    monkeypatch.setenv("PSPNET_TRT_CACHE", str(tmp_path / "cache"))
    tried = []

    def no_network(request, timeout=None):  # never the internet: what an offline machine answers
        tried.append(request.full_url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    monkeypatch.setattr("time.sleep", lambda s: None)
    assert cli_main(["download", "--model", "mv2_os8_voc"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pspnet-trt download: error: cannot download pspnet_mobilenetv2os8_voc")
    assert f"{STORE}/ssseg_mobilenet/pspnet_mobilenetv2os8_voc.pth (no answer" in err[0] and "offline" in err[0]
    assert set(tried) == set(get_spec("mv2_os8_voc").urls)
    assert not list((tmp_path / "cache").glob("*.pth"))


def test_a_flat_mirror_folder_serves_a_mobilenet_entry(www, tmp_path):
    url, root = www
    payload = b"mv2 checkpoint bytes"
    (root / "pspnet_mobilenetv2os8_cityscapes.pth").write_bytes(payload)
    (root / "pspnet_resnet50os8_voc.pth").write_bytes(b"r50")  # the same folder serves the other release's files
    env = {**os.environ, "PSPNET_TRT_MODEL_BASE_URL": url, "PSPNET_TRT_CACHE": str(tmp_path / "cache")}
    for model, body in (("mv2_os8_cityscapes", payload), ("r50_os8_voc", b"r50")):
        r = subprocess.run(CLI + ["download", "--model", model], capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr
        cached = tmp_path / "cache" / get_spec(model).checkpoint_files[0]
        assert cached.read_bytes() == body and str(cached) in r.stdout


# ---------------------------------------------------------------------------------------------------------------
# --pretrained auto: mmclassification's ImageNet MobileNetV2 (keys under backbone., plus conv2 and head.fc)
# ---------------------------------------------------------------------------------------------------------------


def mmcls_file(path: Path, stray: str = "") -> Path:
    """A file shaped like mobilenet_v2_batch256_imagenet_20200708-3b2dc3af.pth: {'state_dict': backbone.* of the
    backbone, backbone.conv2.* (320 -> 1280), head.fc.*}."""
    g = torch.Generator().manual_seed(0)
    state = {f"backbone.{k}": torch.randn(v.shape, generator=g) if v.is_floating_point() else v
             for k, v in MobileNetV2().state_dict().items()}
    state.update({"backbone.conv2.conv.weight": torch.zeros(1280, 320, 1, 1), "backbone.conv2.bn.weight": torch.ones(1280),
                  "head.fc.weight": torch.zeros(1000, 1280), "head.fc.bias": torch.zeros(1000)})
    if stray:
        state[stray] = torch.zeros(1)
    torch.save({"meta": {}, "state_dict": state}, path)
    return path


def test_pretrained_auto_is_the_mmcls_file_and_it_loads_strictly(tmp_path):
    from pspnet_trt.train.pretrained import PretrainedError, load_backbone

    entry = BACKBONES["mobilenetv2"]
    assert entry.pretrained_url == ("https://download.openmmlab.com/mmclassification/v0/mobilenet_v2/"
                                    "mobilenet_v2_batch256_imagenet_20200708-3b2dc3af.pth")
    model = build_model("mv2_os8_camvid")
    record = load_backbone(model.backbone_net, mmcls_file(tmp_path / "a.pth"), "auto", entry.pretrained_extra)
    assert record.tensors == len(model.backbone_net.state_dict())
    file_state = torch.load(tmp_path / "a.pth", weights_only=True)["state_dict"]
    assert torch.equal(model.backbone_net.layer7[0].conv[1].conv.weight,
                       file_state["backbone.layer7.0.conv.1.conv.weight"])
    with pytest.raises(PretrainedError, match=r"neither backbone nor conv2\.\* nor head\.\*, e\.g\. \[.layer8\.w.\]"):
        load_backbone(model.backbone_net, mmcls_file(tmp_path / "b.pth", "backbone.layer8.w"), "auto",
                      entry.pretrained_extra)
    with pytest.raises(PretrainedError, match=r"neither backbone nor fc\.\*"):  # a ResNet entry allows fc.* only
        load_backbone(model.backbone_net, mmcls_file(tmp_path / "c.pth"), "auto")


# ---------------------------------------------------------------------------------------------------------------
# INT8: depthwise convs and ReLU6 quantize as TensorRT fuses Conv+BN+Clip
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mv2_int8(tmp_path_factory):
    from pspnet_trt.export import export_onnx
    from pspnet_trt.models import randomize_
    from pspnet_trt.quant import CalibrationList, make_calibration_list, quantize_onnx

    sample = Path(__file__).resolve().parents[1] / "samples" / "camvid"
    tmp = tmp_path_factory.mktemp("mv2q")
    model = randomize_(build_model("mv2_os8_camvid", ppm_channels=8, aux_channels=8), 1)
    info = DeployInfo.from_spec(get_spec("mv2_os8_camvid"), input_size=(64, 96), output="both")
    fp32 = export_onnx(model, info, tmp / "fp32.onnx")
    cal = make_calibration_list("mv2_os8_camvid", sample, "train", 4, seed=0, out=tmp / "cal.txt")
    return fp32, quantize_onnx(fp32, CalibrationList.read(cal, sample), tmp / "int8.onnx", "entropy")


def test_depthwise_and_relu6_quantize_as_tensorrt_fuses_them(mv2_int8):
    from pspnet_trt.quant import check_placement, qdq_summary

    fp32, int8 = mv2_int8
    model = onnx.load(int8)
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    inits = {i.name: i for i in graph.initializer}
    clips = [n for n in graph.node if n.op_type == "Clip"]
    assert len(clips) == 34
    # Conv -> Clip with nothing between (TensorRT fuses Conv+BN+Clip), the Clip's output quantized by its consumer
    assert {producers[c.input[0]].op_type for c in clips} == {"Conv"}
    consumers = {i: n for n in graph.node for i in n.input}
    assert {consumers[c.output[0]].op_type for c in clips} == {"QuantizeLinear"}
    # every backbone conv runs INT8, the 17 depthwise ones with one weight scale per channel
    depthwise = [n for n in graph.node if n.op_type == "Conv" and next(a.i for a in n.attribute if a.name == "group") > 1]
    assert len(depthwise) == 17
    for conv in depthwise:
        dq = producers[conv.input[1]]
        assert dq.op_type == "DequantizeLinear" and producers[conv.input[0]].op_type == "DequantizeLinear"
        w = inits[dq.input[0]]
        assert onnx.numpy_helper.to_array(inits[dq.input[1]]).shape == (w.dims[0],) and w.dims[1] == 1
    # residual Adds (10 in MobileNetV2): the projection conv (main branch) float into the Add, the identity INT8
    adds = [n for n in graph.node if n.op_type == "Add"]
    assert len(adds) == 10
    for add in adds:
        kinds = sorted(producers[i].op_type for i in add.input)
        assert kinds == ["Conv", "DequantizeLinear"], kinds
    summary = qdq_summary(model)
    assert summary["quantized"]["Conv"] == summary["total"]["Conv"] - 5  # PPM branches + classifier stay float
    check_placement(model)
    # a Q/DQ pair between a Conv and its Clip (what quantizing Conv outputs gives) is refused
    clip = clips[3]
    conv_out = clip.input[0]
    scale = onnx.numpy_helper.from_array(np.array(0.05, np.float32), "t_scale")
    zero = onnx.numpy_helper.from_array(np.array(0, np.int8), "t_zero")
    graph.initializer.extend([scale, zero])
    q = onnx.helper.make_node("QuantizeLinear", [conv_out, "t_scale", "t_zero"], ["t_q"], name="t_Q")
    dq = onnx.helper.make_node("DequantizeLinear", ["t_q", "t_scale", "t_zero"], ["t_dq"], name="t_DQ")
    clip.input[0] = "t_dq"
    graph.node.extend([q, dq])
    with pytest.raises(RuntimeError, match="Q/DQ feeds Clip"):
        check_placement(model)


def test_ort_fake_quant_runs_clip_on_the_float_conv_output(mv2_int8):
    """ONNX Runtime's fake-quant run of the INT8 graph (what validate measures) equals a numpy evaluation of the
    TensorRT fusion Conv+BN+Clip on the first block: dequantized input and weights, float sum plus bias, clip to
    [0, 6], then the consumer's quantization, with no rounding between the Conv and the Clip."""
    import onnxruntime as ort

    from pspnet_trt.artifacts import read_onnx_info
    from pspnet_trt.runtime.ort import session_options_for

    _, int8 = mv2_int8
    model = onnx.load(int8)
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    clip = next(n for n in graph.node if n.op_type == "Clip")
    conv = producers[clip.input[0]]
    q_next = next(n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == clip.output[0])
    dq_in, dq_w = producers[conv.input[0]], producers[conv.input[1]]
    q_in = producers[dq_in.input[0]]
    wanted = [q_in.input[0], q_next.output[0]]
    for name, dtype in zip(wanted, (onnx.TensorProto.FLOAT, onnx.TensorProto.INT8)):
        graph.output.append(onnx.helper.make_tensor_value_info(name, dtype, None))
    session = ort.InferenceSession(model.SerializeToString(), session_options_for(read_onnx_info(int8)),
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {session.get_inputs()[0].name: rng.normal(0, 1, (1, 3, 64, 96)).astype(np.float32)}
    x, got = session.run(wanted, feed)

    def qdq(t, scale):
        return np.clip(np.round(t / scale), -128, 127) * scale

    xq = qdq(x.astype(np.float64), inits[q_in.input[1]])
    w = inits[dq_w.input[0]].astype(np.float64) * inits[dq_w.input[1]].reshape(-1, 1, 1, 1)  # INT8 weights
    y = torch.nn.functional.conv2d(torch.from_numpy(xq), torch.from_numpy(w),
                                   torch.from_numpy(inits[conv.input[2]].astype(np.float64)), stride=2, padding=1)
    expected = np.clip(np.round(np.clip(y.numpy(), 0, 6) / inits[q_next.input[1]]), -128, 127).astype(np.int8)
    steps = np.abs(got.astype(np.int32) - expected)
    assert steps.max() <= 1 and (steps > 0).mean() < 0.01, ((steps > 0).mean(), steps.max())
    assert (expected == np.round(6 / inits[q_next.input[1]])).mean() > 0.001 or (expected > 0).mean() > 0.1


def test_cpu_target_keeps_the_pyramid_pooling_reads_float(mv2_int8, tmp_path):
    """--target cpu quantizes Conv outputs; MobileNetV2 ends in a projection Conv with no activation, whose
    output feeds the pyramid pooling and its Concat: those read the float tensor (placement rules), and the
    quantized copy no node reads is gone."""
    from pspnet_trt.quant import CalibrationList, check_placement, make_calibration_list, quantize_onnx

    sample = Path(__file__).resolve().parents[1] / "samples" / "camvid"
    fp32, _ = mv2_int8
    cal = make_calibration_list("mv2_os8_camvid", sample, "train", 2, seed=0, out=tmp_path / "cal.txt")
    path = quantize_onnx(fp32, CalibrationList.read(cal, sample), tmp_path / "cpu.onnx", "minmax", target="cpu")
    model = onnx.load(path)
    check_placement(model, "cpu")
    producers = {o: n for n in model.graph.node for o in n.output}
    pools = [n for n in model.graph.node if n.op_type in ("AveragePool", "MatMul", "Concat")]
    assert pools and all(producers[i].op_type != "DequantizeLinear" for n in pools for i in n.input if i in producers)
    uses = {i for n in model.graph.node for i in n.input}
    assert all(o in uses for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
               for o in n.output)
