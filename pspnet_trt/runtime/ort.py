"""ONNX Runtime backend: runs an exported ``.onnx`` (FP32, FP16 or Q/DQ INT8) with numpy in and out.

Everything it needs to preprocess (input size, normalisation, output kind, classes) is read from
the file's metadata; nothing is re-typed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np

from ..deploy import METADATA_KEY, DeployInfo, check_onnx_file
from ..deps import require
from ..errors import UserError
from .backend import Backend, as_uint8_labels
from .device import resolve_device

log = logging.getLogger(__name__)


def _providers(ort: Any, device: str) -> List[Any]:
    """Execution providers for ``device`` (auto: CUDA where this onnxruntime has it, i.e. onnxruntime-gpu)."""
    available = ort.get_available_providers()
    dev = resolve_device(device, lambda: "CUDAExecutionProvider" in available)
    if dev.is_cuda:
        if "CUDAExecutionProvider" not in available:
            raise UserError(
                f"device {device!r} asked for, but this onnxruntime has no CUDA provider (available: {available}); "
                "install onnxruntime-gpu instead of onnxruntime, or use device='cpu'"
            )
        return [("CUDAExecutionProvider", {"device_id": dev.index}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OrtBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path: Union[str, Path], device: str = "cpu", threads: Optional[int] = None) -> None:
        ort = require("onnxruntime", "running ONNX files")
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"ONNX file {self.path} does not exist")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=_providers(ort, device))
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
            check_onnx_file(self.path)  # truncated / not ONNX: say so
            raise UserError(f"{self.path}: ONNX Runtime cannot load it ({type(e).__name__}: {e}); re-export it") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise UserError(
                f"{self.path} carries no pspnet-trt metadata (key {METADATA_KEY!r}); export it with `pspnet-trt export`"
            )
        self.info = DeployInfo.from_json(meta[METADATA_KEY], source=self.path)
        self.output_names = [o.name for o in self.session.get_outputs()]
        log.debug("opened %s (%s) outputs %s", self.path, self.info.precision, self.output_names)

    def run(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        batch = self.check_batch(batch)
        values = self.session.run(self.output_names, {self.info.input_name: batch})
        out = dict(zip(self.output_names, values))
        if "labels" in out:
            out["labels"] = as_uint8_labels(out["labels"])
        if "logits" in out:
            out["logits"] = out["logits"].astype(np.float32, copy=False)
        return out

    def close(self) -> None:
        self.session = None

