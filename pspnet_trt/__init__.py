"""pspnet-trt: PSPNet from PyTorch training to validated TensorRT engines.

``import pspnet_trt`` needs only numpy and OpenCV; torch, ONNX Runtime and TensorRT are imported
when a function that needs them is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .version import __version__
from .zoo import ZOO, ModelSpec, get_spec  # data only, no heavy imports

if TYPE_CHECKING:
    from .checkpoints import load_checkpoint
    from .models import build_model
    from .runtime import Segmenter

__all__ = ["ZOO", "ModelSpec", "Segmenter", "__version__", "build_model", "get_spec", "load_checkpoint"]

_LAZY = {
    "build_model": ("pspnet_trt.models", "build_model"),
    "load_checkpoint": ("pspnet_trt.checkpoints", "load_checkpoint"),
    "Segmenter": ("pspnet_trt.runtime", "Segmenter"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        if module == "pspnet_trt.models":
            from .deps import require

            require("torch", f"pspnet_trt.{name}")
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'pspnet_trt' has no attribute {name!r}")
