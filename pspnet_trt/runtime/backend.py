"""The one call shape every inference backend has (PyTorch, ONNX Runtime, TensorRT).

``run(batch)`` takes the artifact's input (``info.input_format``): an Nx3xHxW float32 batch already
resized to ``info.input_size`` and normalised (see :mod:`pspnet_trt.preprocess`), or for a raw-frame
(bgr8) artifact NxHxWx3 uint8 BGR frames at ``info.frame_size`` (labels then come at that size), and
returns the artifact's outputs by name:
``"logits"`` (NxCxHxW float32, upsampled to the input size) and/or ``"labels"`` (NxHxW uint8, whatever
the artifact's own label type: TensorRT 8.x engines write int32, see :func:`as_uint8_labels`).
"""

from __future__ import annotations

import abc
from typing import Any, Dict, Optional

import numpy as np

from ..deploy import DeployInfo


class Backend(abc.ABC):
    name: str = "backend"
    info: DeployInfo
    # The largest batch one ``run`` takes when ``info.batch`` is None (dynamic): None = no known limit (an ONNX);
    # a dynamic engine's optimisation profile max; a Triton model's max_batch_size.
    max_batch: Optional[int] = None
    # A bgr8 backend that takes frames of any size, one per call (the Triton Python model's ``frames`` input):
    # the inference door sends each image as it is instead of resizing it to ``info.frame_size``.
    any_frame_size: bool = False

    @abc.abstractmethod
    def run(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        """Outputs of one batch; see the module docstring."""

    def close(self) -> None:
        """Release sessions, contexts and device memory."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def input_buffer(self, batch: int) -> np.ndarray:
        """An array of the input's shape and dtype for ``batch`` images, to fill and pass to :meth:`run`
        (the TensorRT backend hands out its own host buffer, so the input is not copied again)."""
        return np.empty(self.info.input_shape(batch), self.info.input_dtype)

    def check_batch(self, batch: np.ndarray) -> np.ndarray:
        want = self.info.input_shape(batch.shape[0] if batch.ndim else 0)
        if batch.shape != want:
            shape = "x".join(["N", *map(str, want[1:])])
            raise ValueError(f"{self.name}: expected a {self.info.input_format} batch of shape {shape}, got {batch.shape}")
        if self.info.batch is not None and batch.shape[0] != self.info.batch:
            raise ValueError(f"{self.name}: this artifact has a static batch of {self.info.batch}, got {batch.shape[0]}")
        if self.info.raw_frames and batch.dtype != np.uint8:
            raise ValueError(f"{self.name}: this artifact takes uint8 BGR frames, got {batch.dtype}")
        return np.ascontiguousarray(batch, dtype=self.info.input_dtype)


def as_uint8_labels(labels: np.ndarray) -> np.ndarray:
    """Label maps as uint8 (TensorRT 8.5/8.6 engines give int32). A value outside 0..255 becomes 255, which is
    no class (classes are < 255), rather than wrapping around onto a valid class (300 would become 44)."""
    if labels.dtype == np.uint8:
        return labels
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        labels = np.where((labels < 0) | (labels > 255), 255, labels)
    return labels.astype(np.uint8)
