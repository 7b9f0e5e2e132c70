"""`pspnet-trt predict` on streams: a short video written here with OpenCV, folders, errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from pspnet_trt.errors import UserError
from pspnet_trt.runtime.streams import open_source, run_pipeline, run_plain


def _video(path: Path, n: int = 6, hw=(64, 128), fps: float = 12.0) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (hw[1], hw[0]))
    assert w.isOpened()
    rng = np.random.default_rng(0)
    for i in range(n):
        frame = cv2.GaussianBlur(rng.integers(0, 256, (*hw, 3), dtype=np.uint8), (0, 0), 2)
        cv2.putText(frame, str(i), (5, 40), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2)
        w.write(frame)
    w.release()
    return path


def _read_all(path: Path):
    cap = cv2.VideoCapture(str(path))
    fps, frames = cap.get(cv2.CAP_PROP_FPS), []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return fps, frames


def test_video_pipeline_writes_playable_overlay_video_with_same_fps_and_size(tiny_onnx, tmp_path):
    from pspnet_trt.runtime import Segmenter

    src = open_source([str(_video(tmp_path / "clip.mp4"))])
    assert src.kind == "video"
    with Segmenter.open(tiny_onnx) as seg:
        stats = run_pipeline(seg, src, tmp_path / "out", labels=True, queue_size=2, progress=False)
        fps, frames = _read_all(tmp_path / "out" / "clip_overlay.mp4")
        assert stats.frames == 6 and len(frames) == 6 and fps == pytest.approx(12.0)
        assert frames[0].shape == (64, 128, 3)
        labels = sorted((tmp_path / "out").glob("clip_*_labels.png"))
        assert len(labels) == 6
        # the label PNGs are what the Segmenter predicts for the decoded frames, in order
        _, decoded = _read_all(tmp_path / "clip.mp4")
        np.testing.assert_array_equal(cv2.imread(str(labels[3]), cv2.IMREAD_UNCHANGED), seg.predict(decoded[3]))
        plain = run_plain(seg, src, tmp_path / "plain", progress=False)
        assert plain.frames == 6 and len(_read_all(tmp_path / "plain" / "clip_overlay.mp4")[1]) == 6


def test_interrupt_finishes_the_video(tiny_onnx, tmp_path):
    """Ctrl-C during inference: the frames already decoded are written and the file is closed (playable)."""
    from pspnet_trt.runtime import Segmenter

    src = open_source([str(_video(tmp_path / "clip.mp4", n=10))])
    with Segmenter.open(tiny_onnx) as seg:
        predict, calls = seg.predict, []

        def flaky(image):
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return predict(image)

        seg.predict = flaky
        stats = run_pipeline(seg, src, tmp_path / "out", queue_size=2, progress=False)
    assert stats.interrupted
    _, frames = _read_all(tmp_path / "out" / "clip_overlay.mp4")
    assert 2 <= len(frames) == stats.frames < 10


def test_sources_are_classified(tmp_path):
    (tmp_path / "imgs").mkdir()
    cv2.imwrite(str(tmp_path / "imgs" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    assert open_source(["0"]).kind == "camera" and open_source(["0"]).target == 0
    assert open_source(["rtsp://cam.local/live"]).kind == "stream"
    assert open_source([str(tmp_path / "imgs")]).images == (tmp_path / "imgs" / "a.png",)
    with pytest.raises(UserError, match="only input"):
        open_source(["0", str(tmp_path / "imgs")])
    with pytest.raises(UserError, match="no such file"):
        open_source([str(tmp_path / "missing.png")])
    with pytest.raises(UserError, match="does not exist"):
        open_source([str(tmp_path / "missing.mp4")])


def test_predict_cli_on_a_video(tiny_onnx, tmp_path):
    video = _video(tmp_path / "v.mp4", n=3)
    r = subprocess.run([sys.executable, "-m", "pspnet_trt", "predict", "--model", str(tiny_onnx), "--out",
                        str(tmp_path / "out"), str(video)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "3 frames" in r.stdout and len(_read_all(tmp_path / "out" / "v_overlay.mp4")[1]) == 3
