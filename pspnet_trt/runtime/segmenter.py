"""``Segmenter``: the API apps embed. One interface over TensorRT, ONNX Runtime and PyTorch.

    seg = Segmenter.open("engines/r18_os8_camvid_fp16.engine")   # or an .onnx, or a zoo name
    labels = seg.predict(cv2.imread("street.png"))              # uint8 HxW, in the image's size
    cv2.imwrite("overlay.png", seg.overlay(image, labels))

Everything it needs to preprocess (input size, mean/std, channel order, classes, palette, output
kind) comes from the artifact itself (ONNX metadata or engine manifest).

Threads: ``predict`` holds a lock around the backend call, so one Segmenter may be shared by
threads (calls are serialised). For parallel inference open one Segmenter per thread: each owns
its own ONNX Runtime session or TensorRT execution context.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..deploy import DeployInfo
from ..errors import UserError
from ..preprocess import overlay
from .backend import Backend
from .factory import open_backend
from .inference import check_resize, predict_images

log = logging.getLogger(__name__)


def _warn_if_unvalidated(source: Union[str, Path], model: str) -> None:
    """One warning for an artifact file that was never validated, failed, or whose record is stale
    (see :mod:`pspnet_trt.records`); nothing for a zoo name."""
    if Path(source).is_file():
        from ..records import open_warning

        warning = open_warning(source, model)
        if warning:
            log.warning("%s", warning)


def default_resize(info: DeployInfo) -> str:
    """What the zoo entry's dataset does at test time: sssegmentation's test Resize keeps the aspect ratio
    (VOC, ADE20K, Cityscapes: ``eval_resize`` set) -> ``keep_ratio``; CamVid is tested at its native size,
    which is the deploy size -> ``stretch`` (a no-op there). Unknown models: ``stretch``."""
    from ..zoo import ZOO

    spec = ZOO.get(info.model)
    return "keep_ratio" if spec is not None and spec.eval_resize is not None else "stretch"


class Segmenter:
    def __init__(self, backend: Backend, resize: Optional[str] = None) -> None:
        """``resize``: how an image of another aspect ratio reaches the artifact's fixed input: ``stretch``
        (resize to it), or ``keep_ratio`` (letterbox: resize keeping the ratio into the top-left corner, pad
        with the mean colour, cut the labels back out). Default: :func:`default_resize` of the zoo entry."""
        self.backend = backend
        self.resize = check_resize(resize or default_resize(backend.info))
        self._lock = threading.Lock()

    @classmethod
    def open(cls, source: Union[str, Path], device: str = "auto", checkpoint: Optional[Union[str, Path]] = None,
             resize: Optional[str] = None, **kwargs: Any) -> Segmenter:
        """``source``: an ``.onnx`` file, an engine (``.engine``/``.plan``, manifest beside it) or a zoo name
        (PyTorch; ``checkpoint``: by default the shipped or the published one). ``device``: ``auto`` (an engine on CUDA; an .onnx
        on CUDA when onnxruntime-gpu is installed; a zoo model on CUDA when torch sees a GPU; else the CPU),
        ``cpu``, ``cuda`` or ``cuda:N``. ``resize``: ``stretch`` or ``keep_ratio`` (see :meth:`__init__`)."""
        seg = cls(open_backend(source, device=device, checkpoint=checkpoint, **kwargs), resize=resize)
        _warn_if_unvalidated(source, seg.info.model)
        return seg

    # -- what the artifact says about itself ------------------------------------------------------
    @property
    def info(self) -> DeployInfo:
        return self.backend.info

    @property
    def class_names(self) -> Tuple[str, ...]:
        return self.info.class_names

    @property
    def palette(self) -> Tuple[Tuple[int, int, int], ...]:
        return self.info.palette

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    @property
    def input_size(self) -> Tuple[int, int]:
        return self.info.input_size

    def predict(self, image_bgr: np.ndarray) -> np.ndarray:
        """BGR uint8 image (any size) -> uint8 label map of the same height and width."""
        return self.predict_batch([image_bgr])[0]

    def overlay(self, image_bgr: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """The label map in the artifact's palette blended over the image."""
        return overlay(image_bgr, labels, self.palette, alpha)

    # -- inference -----------------------------------------------------------------------------
    def predict_batch(self, images: Sequence[np.ndarray], resize: Optional[str] = None) -> List[np.ndarray]:
        """Several images (sizes may differ) -> one label map each, in each image's size (in chunks of the
        artifact's batch: a static batch padded, a dynamic one up to its max; see :mod:`.inference`).
        ``resize``: this call's mode (default: the Segmenter's)."""
        return predict_images(self.backend, images, check_resize(resize) if resize else self.resize, lock=self._lock)

    def infer_device(self, input_ptr: int, output_ptr: Any, stream: int = 0, batch: Optional[int] = None) -> None:
        """Run on raw CUDA device pointers (the artifact's input in, its outputs out) on ``stream``.

        The input is what ``info.input_format`` says: for a raw-frame (bgr8) artifact a pointer to the
        NxHxWx3 uint8 BGR frame(s) at ``info.frame_size`` (e.g. a decoder's device buffer), and the labels
        come back as NxHxW uint8 at the frame size; otherwise Nx3xHxW float32 at the input size.

        For apps that keep their data on the GPU (C++ next to Python): no host copies. TensorRT only.
        ``batch``: N (a static-batch engine takes only its own, the default; a dynamic one 1..max, default 1).
        """
        fn = getattr(self.backend, "infer_device", None)
        if fn is None:
            raise UserError(f"infer_device needs the TensorRT backend; this Segmenter runs on {self.backend.name}")
        with self._lock:
            fn(input_ptr, output_ptr, stream, batch)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        i = self.info
        frame = f", {i.input_format} frames {i.frame_size[0]}x{i.frame_size[1]}" if i.frame_size else ""
        return (f"Segmenter({i.model}, {self.backend.name}, {i.precision}, {i.input_size[0]}x{i.input_size[1]}{frame}, "
                f"{i.num_classes} classes, output={i.output}, resize={self.resize})")
