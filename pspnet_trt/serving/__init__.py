"""Serving on NVIDIA Triton Inference Server: model repositories from artifacts (:func:`write_repository`),
the bundled server (:class:`TritonServer`, ``pspnet-trt serve``) and a client: a model on a server as a runtime
Backend (:class:`TritonBackend`) and a ``Segmenter`` over it (:class:`TritonSegmenter`). tritonclient is
imported when a client is opened."""

from __future__ import annotations

from .client import TritonBackend, TritonSegmenter
from .repository import RepoOptions, read_artifact, write_model, write_repository
from .server import TritonServer, find_bundled_server

__all__ = ["RepoOptions", "TritonBackend", "TritonSegmenter", "TritonServer", "find_bundled_server", "read_artifact",
           "write_model", "write_repository"]
