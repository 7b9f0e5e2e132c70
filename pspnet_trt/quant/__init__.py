"""INT8: calibration lists from the training split, Q/DQ quantization, mixed-precision sensitivity search."""

from __future__ import annotations

from .calibrate import CalibrationList, make_calibration_list, select_balanced
from .qdq import METHODS, PlacementError, check_placement, float_by_rule, qdq_summary, quantize_onnx

__all__ = ["METHODS", "CalibrationList", "PlacementError", "check_placement", "float_by_rule", "make_calibration_list",
           "qdq_summary", "quantize_onnx", "select_balanced"]
