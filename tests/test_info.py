"""`pspnet-trt info` says what an artifact takes: its input format, frame size and resize, and the values of its
extra metadata (a raw-frame artifact printed `input 180x240` alone, and `extra: labels_dtype, opset` as keys)."""

from __future__ import annotations

import json

from pspnet_trt.cli import main


def test_info_of_a_raw_frame_artifact_says_it_takes_frames_and_resizes_them(tiny_model, tiny_info, tmp_path, capsys):
    from pspnet_trt.artifacts import read_onnx_info
    from pspnet_trt.export import export_onnx

    info = tiny_info.with_(output="labels", input_format="bgr8", frame_size=(96, 160))
    onnx = export_onnx(tiny_model, info, tmp_path / "frames.onnx")
    assert main(["info", str(onnx)]) == 0
    out = capsys.readouterr().out
    assert "input format bgr8: uint8 BGR camera frames of 96x160 (N x 96 x 160 x 3)" in out, out
    assert "resized in the graph to the network's 64x128" in out and "labels at 96x160" in out, out
    assert "resized on the host first (stretch)" in out, out  # r18_os8_camvid's test-time resize
    extra = read_onnx_info(onnx).extra
    assert extra and all(f"\n    {key}={json.dumps(value)}\n" in out for key, value in extra.items()), (extra, out)


def test_info_of_a_normalized_artifact_names_its_input(tiny_onnx, capsys):
    assert main(["info", str(tiny_onnx)]) == 0
    out = capsys.readouterr().out
    assert "input format normalized: float N x 3 x 64 x 128, normalised on the host" in out, out
    assert "frames" not in out
