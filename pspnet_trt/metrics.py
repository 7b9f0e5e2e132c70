"""Segmentation metrics from a confusion matrix (numpy, no Python loops over pixels)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from .zoo import IGNORE_INDEX


def confusion_matrix(pred: np.ndarray, label: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """``num_classes``x``num_classes`` int64 matrix, rows = ground truth, columns = prediction.

    Pixels whose label is ``ignore_index`` or outside [0, num_classes) are skipped, and so are
    predictions outside [0, num_classes): they are no class, so they land in no column (count them
    with :func:`out_of_range_by_class`; :class:`SegMetrics` scores them as misses).
    """
    return _counts(pred, label, num_classes, ignore_index)[0]


def out_of_range_by_class(pred: np.ndarray, label: np.ndarray, num_classes: int,
                          ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Per ground-truth class, the scored pixels whose prediction lies outside [0, num_classes)."""
    return _counts(pred, label, num_classes, ignore_index)[1]


def _counts(pred: np.ndarray, label: np.ndarray, num_classes: int, ignore_index: int) -> Tuple[np.ndarray, np.ndarray]:
    if pred.shape != label.shape:
        raise ValueError(f"prediction {pred.shape} and label {label.shape} differ in shape")
    label = label.astype(np.int64).ravel()
    pred = pred.astype(np.int64).ravel()
    keep = (label != ignore_index) & (label >= 0) & (label < num_classes)
    label, pred = label[keep], pred[keep]
    valid = (pred >= 0) & (pred < num_classes)
    idx = label[valid] * num_classes + pred[valid]
    cm = np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    return cm, np.bincount(label[~valid], minlength=num_classes)


def iou_per_class(cm: np.ndarray, missed: Optional[np.ndarray] = None) -> np.ndarray:
    """IoU of every class; NaN for a class absent from both ground truth and prediction.

    ``missed``: per ground-truth class, pixels predicted as no class at all (out of range); they
    are false negatives of their true class.
    """
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    if missed is not None:
        union = union + missed
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


@dataclass
class SegMetrics:
    """Accumulates a confusion matrix over images; reports IoU per class, mIoU and pixel accuracy.

    A predicted label outside [0, num_classes) is no class: on a scored pixel it is a miss of the
    true class (never clipped to a valid class). ``invalid_pixels`` counts such predictions on every
    pixel, labelled or not (a healthy artifact emits none); ``invalid_labelled`` on scored pixels only.
    """

    num_classes: int
    ignore_index: int = IGNORE_INDEX
    cm: np.ndarray = field(init=False)
    missed: np.ndarray = field(init=False)  # per true class: scored pixels predicted out of range
    invalid_pixels: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.cm = np.zeros((self.num_classes, self.num_classes), np.int64)
        self.missed = np.zeros(self.num_classes, np.int64)

    def update(self, pred: np.ndarray, label: np.ndarray) -> None:
        cm, missed = _counts(pred, label, self.num_classes, self.ignore_index)
        self.cm += cm
        self.missed += missed
        self.invalid_pixels += int(np.count_nonzero((pred < 0) | (pred >= self.num_classes)))

    @property
    def invalid_labelled(self) -> int:
        return int(self.missed.sum())

    @property
    def iou(self) -> np.ndarray:
        return iou_per_class(self.cm, self.missed)

    @property
    def miou(self) -> float:
        """Mean IoU over classes present in ground truth or prediction (sssegmentation's nanmean)."""
        iou = self.iou
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    @property
    def pixel_accuracy(self) -> float:
        total = self.cm.sum() + self.missed.sum()
        return float(np.trace(self.cm) / total) if total else float("nan")

    def summary(self, class_names: Optional[Sequence[str]] = None) -> Dict[str, object]:
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        return {
            "miou": self.miou,
            "pixel_accuracy": self.pixel_accuracy,
            "iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, self.iou)},
        }


@dataclass
class Agreement:
    """Fraction of (non-ignored) pixels on which two backends predict the same class."""

    same: int = 0
    total: int = 0

    def update(self, a: np.ndarray, b: np.ndarray, valid: Optional[np.ndarray] = None) -> None:
        eq = a == b
        if valid is not None:
            eq = eq[valid]
        self.same += int(eq.sum())
        self.total += int(eq.size)

    @property
    def value(self) -> float:
        return self.same / self.total if self.total else float("nan")
