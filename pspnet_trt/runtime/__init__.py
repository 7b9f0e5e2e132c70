"""What apps embed: :class:`Segmenter` and the backends behind it. Needs numpy and OpenCV only;
each backend imports its engine (onnxruntime, tensorrt, torch) when it is opened."""

from __future__ import annotations

from .backend import Backend
from .factory import open_backend
from .inference import predict_images
from .segmenter import Segmenter

__all__ = ["Backend", "Segmenter", "open_backend", "predict_images"]
