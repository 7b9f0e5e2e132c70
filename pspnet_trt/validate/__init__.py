"""The validator: PyTorch and every artifact on the same images, mIoU per backend, pass or fail.

    report = validate(reference, [OrtBackend("m_fp16.onnx"), TensorRTBackend("m.engine")], dataset,
                      tolerance=0.5, report_dir="reports/m")
    report.passed  # False if an artifact's mIoU is more than `tolerance` points below PyTorch's

Every image is read once and fed to all backends. Each backend gets the image resized to the
artifacts' static input size and normalised with the artifact's own metadata; its output is
brought back to the label's size (logits bilinearly then argmax, as sssegmentation does; a labels
output by nearest neighbour) and scored there.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..data import SegDataset
from ..errors import UserError
from ..metrics import Agreement, SegMetrics
from ..preprocess import logits_to_labels, make_batch, normalize, resize_image, resize_labels
from ..runtime.backend import Backend

log = logging.getLogger(__name__)
MODES = ("whole", "slide")


class ValidationError(UserError):
    """Backends that cannot be compared (class count, input size or normalisation differ)."""


@dataclass
class BackendResult:
    backend: Backend
    label: str
    metrics: SegMetrics
    agreement: Agreement = field(default_factory=Agreement)
    seconds: float = 0.0
    images: int = 0
    path: Optional[str] = None

    @property
    def precision(self) -> str:
        return self.backend.info.precision

    def row(self, reference: BackendResult, tolerance: float, is_reference: bool) -> Dict[str, Any]:
        miou = 100 * self.metrics.miou
        delta = miou - 100 * reference.metrics.miou
        row: Dict[str, Any] = {
            "backend": self.label, "precision": self.precision, "path": self.path,
            "miou": miou, "pixel_accuracy": 100 * self.metrics.pixel_accuracy,
            "delta": None if is_reference else delta,
            "agreement": None if is_reference else 100 * self.agreement.value,
            "images_per_s": self.images / self.seconds if self.seconds else None,
            "size_mb": Path(self.path).stat().st_size / 1e6 if self.path and Path(self.path).is_file() else None,
            "iou": self.metrics.summary(self.backend.info.class_names)["iou"],
        }
        if not is_reference:
            row["passed"] = bool(delta >= -tolerance)
        return row


@dataclass
class ValidationReport:
    rows: List[Dict[str, Any]]
    tolerance: float
    images: int
    mode: str
    class_names: Tuple[str, ...]
    seconds: float

    @property
    def passed(self) -> bool:
        return all(r.get("passed", True) for r in self.rows)

    def to_dict(self) -> Dict[str, Any]:
        return {"passed": self.passed, "tolerance_miou_points": self.tolerance, "images": self.images,
                "mode": self.mode, "seconds": self.seconds, "backends": self.rows}


def check_comparable(reference: Backend, artifacts: Sequence[Backend]) -> None:
    ref = reference.info
    for a in artifacts:
        where = getattr(a, "path", a.name)
        if a.info.num_classes != ref.num_classes:
            raise ValidationError(f"{where} predicts {a.info.num_classes} classes but the model has {ref.num_classes}: "
                                  "it was exported from another model (check --model / --num-classes)")
        if tuple(a.info.input_size) != tuple(ref.input_size):
            raise ValidationError(f"{where} takes {a.info.input_size[0]}x{a.info.input_size[1]} inputs but the others "
                                  f"take {ref.input_size[0]}x{ref.input_size[1]}: validate artifacts of one input size "
                                  "per run")
        if a.info.normalization != ref.normalization:
            raise ValidationError(f"{where} normalises inputs differently ({a.info.normalization}) from the model "
                                  f"({ref.normalization}): it was exported from another zoo entry")


def predict_whole(backend: Backend, image: np.ndarray, label_hw: Tuple[int, int]) -> np.ndarray:
    """Whole-image inference at the static input size, brought back to ``label_hw``."""
    info = backend.info
    batch = make_batch([image], info.input_size, info.normalization)
    if info.batch and info.batch > 1:
        batch = np.repeat(batch, info.batch, axis=0)
    out = backend.run(batch)
    if "logits" in out:
        return logits_to_labels(out["logits"][0], label_hw)
    return resize_labels(out["labels"][0], label_hw)


def slide_windows(size: int, crop: int, stride: int) -> List[int]:
    """Window starts covering [0, size) with windows of ``crop`` and steps of ``stride``."""
    if size <= crop:
        return [0]
    starts = list(range(0, size - crop, stride)) + [size - crop]
    return sorted(set(starts))


def predict_slide(backend: Backend, image: np.ndarray, label_hw: Tuple[int, int],
                  fit: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Sliding-window inference (sssegmentation's 'slide' mode): crops of the input size, stride 2/3 of
    the crop, logits averaged where windows overlap, then resized to ``label_hw``. Needs logits."""
    from ..preprocess import keep_ratio_size

    info = backend.info
    if "logits" not in info.output_names:
        raise ValidationError(f"{getattr(backend, 'path', backend.name)} outputs labels only; sliding-window "
                              "inference averages logits: export with --output logits or both, or use --mode whole")
    ch, cw = info.input_size
    image = resize_image(image, keep_ratio_size(image.shape[:2], fit))
    x = normalize(image, info.normalization)
    h, w = x.shape[1:]
    pad_h, pad_w = max(ch - h, 0), max(cw - w, 0)
    x = np.pad(x, ((0, 0), (0, pad_h), (0, pad_w)))
    total = np.zeros((info.num_classes, h + pad_h, w + pad_w), np.float32)
    count = np.zeros((h + pad_h, w + pad_w), np.float32)
    for top in slide_windows(h + pad_h, ch, math.ceil(ch * 2 / 3)):
        for left in slide_windows(w + pad_w, cw, math.ceil(cw * 2 / 3)):
            crop = x[None, :, top:top + ch, left:left + cw]
            if info.batch and info.batch > 1:
                crop = np.repeat(crop, info.batch, axis=0)
            total[:, top:top + ch, left:left + cw] += backend.run(np.ascontiguousarray(crop))["logits"][0]
            count[top:top + ch, left:left + cw] += 1
    logits = (total / count)[:, :h, :w]
    return logits_to_labels(logits, label_hw)


def validate(reference: Backend, artifacts: Sequence[Backend], dataset: SegDataset, *,
             labels: Optional[Sequence[str]] = None, limit: Optional[int] = None, tolerance: float = 0.5,
             mode: str = "whole", fit: Optional[Tuple[int, int]] = None,
             report_dir: Optional[Union[str, Path]] = None, progress: bool = True) -> ValidationReport:
    """Score ``reference`` (PyTorch) and each artifact on ``dataset``; see the module docstring.

    ``labels`` names the artifacts in the report (default: their file names); ``fit`` is the
    keep-ratio resize of slide mode (the zoo entry's ``eval_resize``).
    """
    from tqdm import tqdm

    if mode not in MODES:
        raise ValidationError(f"mode must be one of {MODES}, got {mode!r}")
    check_comparable(reference, artifacts)
    num_classes = reference.info.num_classes
    names = list(labels) if labels else [_label(a) for a in artifacts]
    results = [BackendResult(reference, "pytorch", SegMetrics(num_classes))]
    results += [BackendResult(a, n, SegMetrics(num_classes), path=str(getattr(a, "path", "")) or None)
                for a, n in zip(artifacts, names)]
    indices = range(len(dataset) if limit is None else min(limit, len(dataset)))
    start = time.perf_counter()
    for i in tqdm(indices, desc="validate", unit="img", disable=not progress):
        sample = dataset[i]
        label_hw = sample.label.shape[:2]
        ref_pred = None
        for r in results:
            t = time.perf_counter()
            if mode == "whole":
                pred = predict_whole(r.backend, sample.image, label_hw)
            else:
                pred = predict_slide(r.backend, sample.image, label_hw, fit)
            r.seconds += time.perf_counter() - t
            r.images += 1
            r.metrics.update(pred, sample.label)
            if ref_pred is None:
                ref_pred = pred
            else:
                r.agreement.update(pred, ref_pred)
    rows = [r.row(results[0], tolerance, i == 0) for i, r in enumerate(results)]
    report = ValidationReport(rows, tolerance, len(indices), mode, reference.info.class_names,
                              round(time.perf_counter() - start, 2))
    if report_dir is not None:
        from .report import write_report

        write_report(report, Path(report_dir))
    for row in rows[1:]:
        log.info("%s: mIoU %.2f (%+.2f vs PyTorch), agreement %.3f %% -> %s", row["backend"], row["miou"],
                 row["delta"], row["agreement"], "pass" if row["passed"] else "FAIL")
    return report


def _label(backend: Backend) -> str:
    path = getattr(backend, "path", None)
    return f"{backend.name} {backend.info.precision} ({Path(path).name})" if path else backend.name


from .report import markdown, write_report  # noqa: E402

__all__ = ["BackendResult", "markdown", "write_report", "ValidationError", "ValidationReport", "predict_slide", "predict_whole", "validate"]
