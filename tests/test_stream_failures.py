"""`pspnet-trt predict` when something goes wrong (issue 26, items 5, 7, 8): inputs that share a stem, a stage
that fails on an endless source, a queue of size 0.

The endless source is a fake ``cv2.VideoCapture`` (a camera that never ends) patched into
``streams._capture``; the failing writer is the real :class:`Writer` raising ``OSError`` at its second
frame. Every wait is bounded: code that keeps running after the failure fails the test instead of hanging.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from pspnet_trt.cli import main
from pspnet_trt.errors import UserError
from pspnet_trt.runtime import streams
from pspnet_trt.runtime.streams import open_source, run_pipeline, run_plain

WAIT_S = 20.0  # the fixed pipeline stops in well under a second; the old one never stopped on its own


class EndlessCamera:
    """A 20 fps camera that never ends (until the test sets ``end``): 64x128 frames, counted. Slower than
    inference, as a live camera is: the decoded queue never fills, so only the failed stage can stop the
    others (a full queue made the old decoder notice the error, which hid the bug)."""

    def __init__(self, frame_s: float = 0.05) -> None:
        self.reads = 0
        self.frame_s = frame_s
        self.end = threading.Event()

    def __call__(self, source):  # stands in for streams._capture
        return self

    def isOpened(self):  # noqa: N802
        return True

    def read(self):
        if self.end.wait(self.frame_s):
            return False, None
        self.reads += 1
        frame = np.full((64, 128, 3), self.reads % 256, np.uint8)
        return True, frame

    def get(self, prop):
        return 0.0  # a camera reports no fps and no frame count

    def release(self):
        pass


class CountingSegmenter:
    """Labels of zeros at the frame's size; counts the predictions."""

    palette = ((0, 0, 0), (255, 0, 0))

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, image):
        self.calls += 1
        return np.zeros(image.shape[:2], np.uint8)


@pytest.fixture
def camera(monkeypatch):
    cam = EndlessCamera()
    monkeypatch.setattr(streams, "_capture", cam)
    return cam


@pytest.fixture
def writer_fails_at_frame_1(monkeypatch):
    """The encoder's write raises OSError at its second frame (the first opens the video)."""
    write = streams.Writer.write

    def failing(self, name, image, labels):
        if self.written == 1:
            raise OSError("No space left on device (test)")
        return write(self, name, image, labels)

    monkeypatch.setattr(streams.Writer, "write", failing)


def _bounded(target, camera: EndlessCamera):
    """Run ``target`` in a thread for at most WAIT_S; if it is still running, end the source so it can finish
    (the test then fails on the recorded timeout, it does not hang). Returns (result or exception, timed_out)."""
    box: dict = {}

    def run():
        try:
            box["result"] = target()
        except BaseException as e:  # noqa: BLE001
            box["result"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(WAIT_S)
    timed_out = t.is_alive()
    camera.end.set()
    t.join(60)
    assert not t.is_alive(), "the pipeline did not stop even after its source ended"
    return box.get("result"), timed_out


# -- item 7: a failing stage stops the others ---------------------------------------------------------------


def test_writer_failure_on_an_endless_source_stops_the_pipeline(camera, writer_fails_at_frame_1, tmp_path):
    queue_size = 2
    seg = CountingSegmenter()
    source = open_source(["0"])
    result, timed_out = _bounded(
        lambda: run_pipeline(seg, source, tmp_path / "out", queue_size=queue_size, progress=False), camera)
    assert not timed_out, f"inference still running {WAIT_S:.0f} s after the writer failed ({seg.calls} predictions)"
    assert isinstance(result, OSError) and "No space left" in str(result)
    # written (2, the second failing) + the predicted queue + one prediction in flight when the error came
    assert seg.calls <= 2 + queue_size + 1
    # the decoder stops too: what it read was predicted, queued, or the one frame in its hands
    assert camera.reads <= seg.calls + queue_size + 2
    # the video written before the error is closed (playable) under its usual name
    cap = cv2.VideoCapture(str(tmp_path / "out" / "camera0_overlay.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (64, 128, 3)


def test_predict_cli_reports_a_writer_failure_once_with_exit_2(camera, writer_fails_at_frame_1, tiny_onnx,
                                                                  tmp_path, capsys):
    camera.frame_s = 0.25  # slower than the tiny model's inference on a busy 2-core machine
    out = tmp_path / "out"
    rc, timed_out = _bounded(lambda: main(["predict", "--model", str(tiny_onnx), "--out", str(out), "0"]), camera)
    assert not timed_out, f"predict still running {WAIT_S:.0f} s after the writer failed"
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("No space left on device (test)") == 1, err
    assert (out / "camera0_overlay.mp4").is_file()


def test_inference_failure_stops_decoding_an_endless_source(camera, tmp_path):
    seg = CountingSegmenter()
    predict = seg.predict

    def broken(image):
        if seg.calls == 3:
            raise RuntimeError("inference failed (test)")
        return predict(image)

    seg.predict = broken
    result, timed_out = _bounded(lambda: run_pipeline(seg, open_source(["0"]), tmp_path / "out", queue_size=2,
                                                      progress=False), camera)
    assert not timed_out
    assert isinstance(result, RuntimeError) and seg.calls == 3


# -- item 8: --queue 0 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["0", "-1"])
def test_predict_refuses_a_queue_below_1(size, tiny_onnx, tmp_path, capsys):
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    rc = main(["predict", "--model", str(tiny_onnx), "--out", str(tmp_path / "out"), "--queue", size, str(image)])
    err = capsys.readouterr().err
    assert rc == 2 and f"--queue {size}" in err and "at least 1" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserError, match="--queue 0"):
        run_pipeline(CountingSegmenter(), open_source([str(image)]), tmp_path / "lib", queue_size=0, progress=False)


# -- item 5: inputs that share a stem --------------------------------------------------------------------------


@pytest.mark.parametrize("pipeline", [True, False])
def test_inputs_with_one_stem_keep_every_output(pipeline, tiny_onnx, tmp_path):
    from pspnet_trt.runtime import Segmenter

    sizes = {"a/x.png": (40, 56), "b/x.png": (48, 72), "x.jpg": (56, 88), "X.png": (64, 96), "x-2.png": (72, 104)}
    paths = []
    for i, (rel, (h, w)) in enumerate(sizes.items()):
        p = tmp_path / "in" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8))
        paths.append(str(p))
    source = open_source(paths)
    out = tmp_path / "out"
    with Segmenter.open(tiny_onnx) as seg:
        stats = (run_pipeline if pipeline else run_plain)(seg, source, out, progress=False)
        assert stats.frames == 5
        # each input keeps its own three outputs, named in input order (the first keeps the plain stem)
        stems = ["x", "x-2", "x-3", "X-4", "x-2-2"]
        assert sorted(f.name for f in out.iterdir()) == sorted(
            f"{s}_{kind}.png" for s in stems for kind in ("labels", "color", "overlay"))
        for path, stem in zip(paths, stems):
            image = cv2.imread(path)
            labels = cv2.imread(str(out / f"{stem}_labels.png"), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(labels, seg.predict(image))
            assert cv2.imread(str(out / f"{stem}_overlay.png")).shape == image.shape
