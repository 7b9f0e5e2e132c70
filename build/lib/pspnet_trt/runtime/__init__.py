"""What apps embed: :class:`Segmenter` and the backends behind it. Needs numpy and OpenCV only;
each backend imports its engine (onnxruntime, tensorrt, torch) when it is opened."""

from __future__ import annotations

from .backend import Backend, open_backend
from .segmenter import Segmenter

__all__ = ["Backend", "Segmenter", "open_backend"]
