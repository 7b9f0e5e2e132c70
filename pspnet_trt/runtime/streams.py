"""Frames in, overlays out: image files, folders, video files, cameras and RTSP/HTTP streams (OpenCV only).

    source = open_source(["street.mp4"])            # or ["0"] (camera 0), ["rtsp://..."], ["a.png", "dir/"]
    stats = run_pipeline(seg, source, Path("out"))  # decode thread -> queue -> inference -> queue -> encode thread

Decoding (``cv2.imread`` / ``cv2.VideoCapture.read``), inference (this thread, ``Segmenter.predict``) and
encoding (overlay blend + ``cv2.imwrite`` / ``cv2.VideoWriter``) overlap: two bounded queues sit between
the three stages, so memory stays bounded and the slowest stage sets the pace. A video or camera input
gives one overlay video (same fps and size, ``mp4v`` in ``.mp4``); image inputs give ``<stem>_overlay.png``,
``<stem>_color.png`` and ``<stem>_labels.png``; ``labels=True`` also writes each video frame's label map as a
PNG. Ctrl-C stops decoding; the frames already decoded are finished and the video writer is released, so the
file stays playable.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ..errors import UserError
from ..files import check_outputs
from ..preprocess import colorize, write_image

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")
URL_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://")
_END = object()


@dataclass
class Source:
    """What ``predict`` reads: a list of image files, or one video-like capture (file, camera, URL)."""

    kind: str  # images | video | camera | stream
    images: Tuple[Path, ...] = ()
    target: Union[str, int, None] = None  # what cv2.VideoCapture opens
    name: str = "stream"  # output file stem of a video-like source

    @property
    def is_video(self) -> bool:
        return self.kind != "images"


def open_source(items: Sequence[str]) -> Source:
    """Classify the ``predict`` inputs: one camera index, URL or video file, else image files and folders."""
    if not items:
        raise UserError("give image files, a folder, a video file, a camera index or an RTSP/HTTP URL")
    videos = [i for i in items if i.isdigit() or i.lower().startswith(URL_PREFIXES) or Path(i).suffix.lower() in VIDEO_SUFFIXES]
    if videos:
        if len(items) != 1:
            raise UserError(f"a video, camera or stream ({videos[0]}) must be the only input; run one predict per video")
        item = items[0]
        if item.isdigit():
            return Source("camera", target=int(item), name=f"camera{item}")
        if item.lower().startswith(URL_PREFIXES):
            stem = Path(item.split("?")[0].rstrip("/")).stem or "stream"
            return Source("stream", target=item, name=stem)
        if not Path(item).is_file():
            raise UserError(f"video file {item} does not exist")
        return Source("video", target=item, name=Path(item).stem)
    images: List[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UserError(f"folder {p} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            images += found
        elif p.is_file():
            images.append(p)
        else:
            raise UserError(f"{item}: no such file or folder (nor a camera index or rtsp/http URL)")
    return Source("images", images=tuple(images))


def _capture(source: Source) -> Any:
    cap = cv2.VideoCapture(source.target)  # type: ignore[arg-type]
    if not cap.isOpened():
        raise UserError(f"OpenCV cannot open {source.kind} {source.target!r} (no such device/file, unsupported "
                        "codec, or unreachable URL)")
    return cap


def output_stems(images: Sequence[Path]) -> List[str]:
    """One output stem per image: its file stem, unless an earlier input already has it (``a/x.png b/x.png``,
    ``x.png x.jpg``, or the same file twice): then ``<stem>-2``, ``<stem>-3``... so no result overwrites another.
    Compared case-insensitively (``X.png`` and ``x.png`` are one file on macOS and Windows)."""
    taken: set = set()
    stems: List[str] = []
    for path in images:
        stem, n = path.stem, 1
        while stem.casefold() in taken:
            n += 1
            stem = f"{path.stem}-{n}"
        if n > 1:
            log.warning("%s has the same stem as an earlier input: its outputs are named %s_*", path, stem)
        taken.add(stem.casefold())
        stems.append(stem)
    return stems


IMAGE_OUTPUTS = ("labels", "color", "overlay")  # <stem>_<what>.png per image


def output_paths(source: Source, out: Path) -> List[Path]:
    """The files ``predict`` names in ``out`` for ``source`` (a video's per-frame label maps aside: those are
    numbered frames of a video input, never a file it reads)."""
    if source.is_video:
        return [out / f"{source.name}_overlay.mp4"]
    return [out / f"{stem}_{what}.png" for stem in output_stems(source.images) for what in IMAGE_OUTPUTS]


def check_not_inputs(source: Source, out: Path) -> None:
    """Refuse (one line) an output path that is one of the inputs, e.g. ``--out D D/a.jpg D/a_overlay.png``."""
    inputs = list(source.images) if not source.is_video else [Path(str(source.target))] if source.kind == "video" else []
    check_outputs(output_paths(source, out), inputs, fix="pass another --out folder")


def frames(source: Source, stop: Optional[threading.Event] = None) -> Iterator[Tuple[str, np.ndarray]]:
    """(output stem, BGR frame) pairs of ``source`` until it ends or ``stop`` is set."""
    if not source.is_video:
        for path, stem in zip(source.images, output_stems(source.images)):
            if stop is not None and stop.is_set():
                return
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise UserError(f"cannot read image {path}: missing, unreadable or not an image")
            yield stem, image
        return
    cap = _capture(source)
    try:
        i = 0
        while stop is None or not stop.is_set():
            ok, frame = cap.read()
            if not ok:
                return
            yield f"{source.name}_{i:06d}", frame
            i += 1
    finally:
        cap.release()


def video_props(source: Source) -> Tuple[float, int]:
    """(fps, frame count or 0) of a video-like source; fps 30 when the container does not say."""
    cap = _capture(source)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()
    return (fps if 0 < fps < 1000 else 30.0), max(count, 0)


class Writer:
    """The encode stage: overlays as images, or one overlay video (opened at the first frame's size)."""

    def __init__(self, out: Path, source: Source, palette: Sequence[Sequence[int]], alpha: float = 0.5,
                 labels: bool = False, fps: float = 30.0) -> None:
        self.out, self.source, self.palette, self.alpha = out, source, palette, alpha
        self.labels, self.fps = labels, fps
        self.video: Any = None
        self.video_path: Optional[Path] = None
        self.written = 0

    def write(self, name: str, image: np.ndarray, labels: np.ndarray) -> None:
        from ..preprocess import overlay

        self.out.mkdir(parents=True, exist_ok=True)  # at the first result: a failed input leaves no empty folder
        blended = overlay(image, labels, self.palette, self.alpha)
        if self.source.is_video:
            if self.video is None:
                self.video_path = self.out / f"{self.source.name}_overlay.mp4"
                h, w = blended.shape[:2]
                self.video = cv2.VideoWriter(str(self.video_path), cv2.VideoWriter.fourcc(*"mp4v"), self.fps, (w, h))
                if not self.video.isOpened():
                    raise UserError(f"OpenCV cannot write {self.video_path} with the mp4v codec")
            self.video.write(blended)
            if self.labels:
                write_image(self.out / f"{name}_labels.png", labels)
        else:
            write_image(self.out / f"{name}_labels.png", labels)
            write_image(self.out / f"{name}_color.png", colorize(labels, self.palette))
            write_image(self.out / f"{name}_overlay.png", blended)
        self.written += 1

    def close(self) -> None:
        if self.video is not None:
            self.video.release()  # writes the container's index: the file is playable
            self.video = None


@dataclass
class StreamStats:
    frames: int
    seconds: float
    interrupted: bool
    outputs: List[str]

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def _progress(source: Source, total: Optional[int], enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total or None, desc=f"predict {source.kind}", unit="frame", disable=not enabled)


def check_queue_size(queue_size: int) -> int:
    """``--queue``: at least 1 (``queue.Queue(0)`` would be unbounded: decoding would run ahead without limit)."""
    if int(queue_size) < 1:
        raise UserError(f"--queue {queue_size}: the queues between decode, inference and encode hold at least 1 "
                        "frame; pass --queue 1 or more (default 4)")
    return int(queue_size)


def run_pipeline(seg: Any, source: Source, out: Path, alpha: float = 0.5, labels: bool = False,
                 queue_size: int = 4, progress: bool = True) -> StreamStats:
    """Decode thread -> bounded queue -> inference (this thread) -> bounded queue -> encode thread.

    A failure in any stage stops the other two within one queue length (decoding and inference check
    before every frame; nothing waits on a dead stage) and is raised here once; the output written so
    far is closed under its usual name.
    """
    queue_size = check_queue_size(queue_size)
    check_not_inputs(source, Path(out))
    fps, count = video_props(source) if source.is_video else (30.0, len(source.images))
    writer = Writer(out, source, seg.palette, alpha, labels, fps)
    decoded: queue.Queue = queue.Queue(maxsize=queue_size)
    predicted: queue.Queue = queue.Queue(maxsize=queue_size)
    stop = threading.Event()  # decoding stops: interrupted, failed or done
    failed = threading.Event()  # a stage raised: no stage starts another frame
    errors: List[BaseException] = []

    def fail(e: BaseException) -> None:
        errors.append(e)
        failed.set()
        stop.set()

    def put(q: queue.Queue, item: Any) -> bool:
        """Put unless a stage failed (then give up instead of working on, or blocking forever)."""
        while not failed.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def decode() -> None:
        try:
            for item in frames(source, stop):
                if not put(decoded, item):
                    return
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            fail(e)
        finally:
            decoded.put(_END)

    def encode() -> None:
        try:
            while True:
                item = predicted.get()
                if item is _END:
                    return
                writer.write(*item)
        except BaseException as e:  # noqa: BLE001
            fail(e)
            while predicted.get() is not _END:  # the inference thread's last put and its _END never block
                pass
        finally:
            writer.close()

    threads = [threading.Thread(target=decode, name="decode", daemon=True),
               threading.Thread(target=encode, name="encode", daemon=True)]
    for t in threads:
        t.start()
    interrupted = False
    done = 0
    bar = _progress(source, count, progress)
    start = time.perf_counter()
    try:
        while not failed.is_set():
            try:
                item = decoded.get()
                if item is _END or failed.is_set():
                    break
                name, image = item
                result = seg.predict(image)
                if not put(predicted, (name, image, result)):
                    break
                done += 1
                bar.update(1)
            except KeyboardInterrupt:  # finish what is decoded, close the file
                interrupted = True
                stop.set()
                log.warning("interrupted: finishing the frames already decoded and closing the output")
    finally:
        stop.set()
        while threads[0].is_alive():  # unblock the decoder if we stopped early
            try:
                decoded.get(timeout=0.05)
            except queue.Empty:
                pass
        predicted.put(_END)
        for t in threads:
            t.join()
        bar.close()
    seconds = time.perf_counter() - start
    if errors:
        if writer.video_path is not None:
            log.warning("%s holds the %d frames written before the error", writer.video_path, writer.written)
        raise errors[0]
    outputs = [str(writer.video_path)] if writer.video_path else [str(out)]
    return StreamStats(done, seconds, interrupted, outputs)


def run_plain(seg: Any, source: Source, out: Path, alpha: float = 0.5, labels: bool = False,
              progress: bool = True) -> StreamStats:
    """The same work in one thread, one frame after the other (the baseline the pipeline is measured against)."""
    check_not_inputs(source, Path(out))
    fps, count = video_props(source) if source.is_video else (30.0, len(source.images))
    writer = Writer(out, source, seg.palette, alpha, labels, fps)
    bar = _progress(source, count, progress)
    start, done, interrupted = time.perf_counter(), 0, False
    try:
        for name, image in frames(source):
            writer.write(name, image, seg.predict(image))
            done += 1
            bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        writer.close()
        bar.close()
    outputs = [str(writer.video_path)] if writer.video_path else [str(out)]
    return StreamStats(done, time.perf_counter() - start, interrupted, outputs)
