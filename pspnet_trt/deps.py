"""Optional dependencies: import a heavy package where it is used, or stop with one clear line."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import UserError

# package to import -> (pip name, extra of pspnet-trt that brings it)
EXTRAS = {
    "torch": ("torch", "train"),
    "onnx": ("onnx", "train"),
    "onnxslim": ("onnxslim", "train"),
    "onnxconverter_common": ("onnxconverter-common", "train"),
    "onnxruntime": ("onnxruntime", "ort"),
    "matplotlib": ("matplotlib", "train"),
    "tensorrt": ("tensorrt", "trt"),
    "cuda": ("cuda-python", "trt"),
}


class MissingDependency(UserError, ImportError):
    """A stage needs a package that this install does not have. The message says how to get it."""


def require(module: str, purpose: str = "") -> ModuleType:
    """``importlib.import_module(module)``, or a :class:`MissingDependency` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        root = module.split(".")[0]
        pip_name, extra = EXTRAS.get(root, (root, "dev"))
        what = f" for {purpose}" if purpose else ""
        hint = f"pip install '.[{extra}]' in the pspnet-trt checkout (or pip install {pip_name})"
        if root == "tensorrt":
            hint += " (on Jetson, TensorRT comes with JetPack: `sudo apt install python3-libnvinfer`)"
        if root == "torch":
            hint += " (or a torch wheel for your platform, e.g. NVIDIA's on Jetson)"
        raise MissingDependency(f"{pip_name} is needed{what} but is not installed ({e}). Install it with: {hint}") from e


def import_tensorrt() -> ModuleType:
    """``tensorrt``, or a :class:`MissingDependency` saying how to install it (used by build and runtime alike)."""
    return require("tensorrt", "building and running TensorRT engines")
