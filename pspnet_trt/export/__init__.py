"""ONNX export with exact fixed pools, FP16 graphs, and the PyTorch-vs-ONNX Runtime parity check."""

from __future__ import annotations

from .check import ParityReport, check_export
from .onnx_export import (
    attach_metadata,
    export_onnx,
    export_zoo,
    save_onnx,
    simplify,
    to_fp16,
    trace_onnx,
    verify_graph,
    zoo_model,
)

__all__ = [
    "attach_metadata", "export_onnx", "export_zoo", "save_onnx", "simplify", "to_fp16", "trace_onnx",
    "verify_graph", "zoo_model", "ParityReport", "check_export",
]
