"""TensorRT engines: build, manifest, version checks. ``tensorrt`` and ``cuda-python`` are imported lazily."""

from __future__ import annotations

from .build import BuildConfig, build_engine, build_serialized, configure, network_from_onnx, save_engine
from .manifest import EngineMismatch, Manifest, check_manifest, read_manifest
from .version import Capabilities, capabilities

__all__ = ["BuildConfig", "Capabilities", "EngineMismatch", "Manifest", "build_engine", "build_serialized",
           "capabilities", "check_manifest", "configure", "network_from_onnx", "read_manifest", "save_engine"]
