"""TensorRT engines: build, manifest, version checks. ``tensorrt`` and ``cuda-python`` are imported lazily.

The names below load on first use (PEP 562). The runtime never imports this layer: it reads an engine's manifest
through :mod:`pspnet_trt.artifacts` and talks to CUDA through :mod:`pspnet_trt.runtime.cuda`."""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "BuildConfig": "build", "build_engine": "build", "build_serialized": "build", "configure": "build",
    "network_from_onnx": "build", "save_engine": "build", "labels_dtype": "build",
    "EngineMismatch": "manifest", "Manifest": "manifest", "check_manifest": "manifest", "read_manifest": "manifest",
    "Capabilities": "version", "capabilities": "version",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
