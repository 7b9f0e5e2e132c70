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

import threading
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..deploy import DeployInfo
from ..errors import UserError
from ..preprocess import check_image, frames_batch, input_batch, logits_to_labels, overlay, resize_labels
from .backend import Backend, open_backend


class Segmenter:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._lock = threading.Lock()

    @classmethod
    def open(cls, source: Union[str, Path], device: str = "cpu", checkpoint: Optional[Union[str, Path]] = None,
             **kwargs: Any) -> Segmenter:
        """``source``: an ``.onnx`` file, an engine (``.engine``/``.plan``, manifest beside it) or a zoo name
        (PyTorch; ``checkpoint`` defaults to the published one). ``device``: ``cpu`` or ``cuda[:N]``."""
        return cls(open_backend(source, device=device, checkpoint=checkpoint, **kwargs))

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

    # -- inference -----------------------------------------------------------------------------
    def predict(self, image_bgr: np.ndarray) -> np.ndarray:
        """BGR uint8 image (any size) -> uint8 label map of the same height and width."""
        return self.predict_batch([image_bgr])[0]

    def predict_batch(self, images: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Several images (sizes may differ) -> one label map each, in each image's size."""
        images = [check_image(im, f"image {i}") for i, im in enumerate(images)]
        step = self.info.batch or max(len(images), 1)
        results: List[np.ndarray] = []
        for start in range(0, len(images), step):
            chunk = images[start:start + step]
            with self._lock:
                out = self.backend.run(self._batch(chunk))
            for i, image in enumerate(chunk):
                size = image.shape[:2]
                if "logits" in out:  # bilinear logits to the image size, then argmax (sssegmentation's way)
                    results.append(logits_to_labels(out["logits"][i], size))
                else:
                    results.append(resize_labels(out["labels"][i], size))
        return results

    def _batch(self, chunk: Sequence[np.ndarray]) -> np.ndarray:
        """The backend input for ``chunk``, padded to a static batch with the last image. A raw-frame (bgr8)
        artifact: each frame is copied once, into the backend's own input buffer (no host preprocessing;
        a frame of another size is resized on the host first, with a debug line)."""
        n = self.info.batch or len(chunk)
        if self.info.raw_frames:
            assert self.info.frame_size is not None
            padded = list(chunk) + [chunk[-1]] * (n - len(chunk))
            return frames_batch(padded, self.info.frame_size, out=self.backend.input_buffer(n))
        batch = input_batch(chunk, self.info)
        if len(chunk) < n:
            batch = np.concatenate([batch, np.repeat(batch[-1:], n - len(chunk), axis=0)])
        return batch

    def overlay(self, image_bgr: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """The label map in the artifact's palette blended over the image."""
        return overlay(image_bgr, labels, self.palette, alpha)

    def infer_device(self, input_ptr: int, output_ptr: Any, stream: int = 0) -> None:
        """Run on raw CUDA device pointers (the artifact's input in, its outputs out) on ``stream``.

        The input is what ``info.input_format`` says: for a raw-frame (bgr8) artifact a pointer to the
        NxHxWx3 uint8 BGR frame(s) at ``info.frame_size`` (e.g. a decoder's device buffer), and the labels
        come back as NxHxW uint8 at the frame size; otherwise Nx3xHxW float32 at the input size.

        For apps that keep their data on the GPU (C++ next to Python): no host copies. TensorRT only.
        """
        fn = getattr(self.backend, "infer_device", None)
        if fn is None:
            raise UserError(f"infer_device needs the TensorRT backend; this Segmenter runs on {self.backend.name}")
        with self._lock:
            fn(input_ptr, output_ptr, stream)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        i = self.info
        return (f"Segmenter({i.model}, {self.backend.name}, {i.precision}, {i.input_size[0]}x{i.input_size[1]}, "
                f"{i.num_classes} classes, output={i.output})")
