"""Device strings: ``auto``, ``cpu``, ``cuda``, ``cuda:N``. Plain logic, no backend imported.

``auto`` is resolved per artifact by the backend that opens it: a TensorRT engine always runs on
CUDA (device 0); an ``.onnx`` runs on CUDA when the installed onnxruntime has the CUDA provider
(onnxruntime-gpu), else on the CPU; a zoo model (PyTorch) on CUDA when ``torch.cuda.is_available()``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional

from ..errors import UserError

AUTO = "auto"
DEVICE_HELP = ("auto (default: CUDA for an engine; for an .onnx when onnxruntime-gpu is installed; for a zoo model "
               "when torch sees a GPU; else the CPU), cpu, cuda or cuda:N (GPU index N)")


@dataclass(frozen=True)
class Device:
    kind: str  # "cpu" | "cuda"
    index: int = 0  # CUDA device ordinal

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"


def parse_device(text: str) -> Optional[Device]:
    """``None`` for ``auto`` (resolved by the backend), else the device; a UserError for anything else."""
    t = str(text).strip().lower()
    if t == AUTO:
        return None
    if t == "cpu":
        return Device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", t)
    if m is None:
        raise UserError(f"device {text!r} is not one of auto, cpu, cuda or cuda:N (N = the GPU index, e.g. cuda:1)")
    return Device("cuda", int(m.group(1) or 0))


def resolve_device(text: str, cuda_available: Callable[[], bool]) -> Device:
    """``text`` as a Device; ``auto`` becomes ``cuda:0`` if ``cuda_available()`` else ``cpu``."""
    device = parse_device(text)
    if device is None:
        return Device("cuda", 0) if cuda_available() else Device("cpu")
    return device
