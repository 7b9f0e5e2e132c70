"""The validator: PyTorch and every artifact on the same images, mIoU per backend, pass or fail.

    report = validate(reference, [OrtBackend("m_fp16.onnx"), TensorRTBackend("m.engine")], dataset,
                      tolerance=0.5, limit=100, report_dir="reports/m")
    report.passed  # False if an artifact's mIoU is more than `tolerance` points below PyTorch's, or its labels
                   # agree with PyTorch's on fewer pixels than the floor of its precision (AGREEMENT_FLOORS)

    # or from names and paths, as `pspnet-trt validate` does:
    report = validate_artifacts("r18_os8_camvid", ["m_fp32.onnx"], "data/camvid", checkpoint="m.pth")
    # ... which also records each verdict with its artifact (write_records: m_fp32.validation.json)

Every image is read once, preprocessed once and fed to all backends: resized to the artifacts'
static input size and normalised with their metadata (whole mode), or cut into crops of that size
(slide mode, see :mod:`.inference`). Outputs are brought back to the label's size (logits
bilinearly then argmax, as sssegmentation does; a labels output by nearest neighbour) and scored
there. The reference is a :class:`~pspnet_trt.runtime.torch_backend.TorchBackend` at the same
input size; each artifact's agreement is computed against that model computing what the artifact's graph
computes (:func:`reference_for`).
"""

from __future__ import annotations

from .core import (
    BackendResult,
    ValidationReport,
    check_comparable,
    check_info,
    open_artifacts,
    open_reference,
    reference_for,
    reference_output,
    validate,
    validate_artifacts,
    write_records,
)
from .gate import AGREEMENT_FLOORS, Verdict, agreement_floor, gate
from .inference import (
    MODES,
    ValidationError,
    default_stride,
    predict,
    predict_slide,
    predict_whole,
    slide_logits,
    slide_windows,
)
from .report import bar_chart, markdown, write_report

__all__ = [
    "AGREEMENT_FLOORS", "MODES", "Verdict", "agreement_floor", "gate", "reference_for", "BackendResult", "ValidationError", "ValidationReport", "bar_chart", "check_comparable", "check_info",
    "default_stride", "markdown", "open_artifacts", "open_reference", "predict", "predict_slide",
    "predict_whole", "reference_output", "slide_logits", "slide_windows", "validate", "validate_artifacts",
    "write_records", "write_report",
]
