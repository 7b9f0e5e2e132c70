from __future__ import annotations

import numpy as np

from pspnet_trt.metrics import Agreement, SegMetrics, confusion_matrix


def reference_miou(preds, labels, num_classes, ignore=255):
    """Independent computation: per-class set counting with Python sets of pixel indices."""
    inter = [0] * num_classes
    union = [0] * num_classes
    for p, t in zip(preds, labels):
        p, t = p.ravel(), t.ravel()
        valid = set(np.flatnonzero(t != ignore).tolist())
        for c in range(num_classes):
            ps = set(np.flatnonzero(p == c).tolist()) & valid
            ts = set(np.flatnonzero(t == c).tolist())
            inter[c] += len(ps & ts)
            union[c] += len(ps | ts)
    ious = [i / u for i, u in zip(inter, union) if u > 0]
    return sum(ious) / len(ious)


def test_miou_matches_independent_reference_to_1e9():
    rng = np.random.default_rng(0)
    metrics = SegMetrics(7)
    preds, labels = [], []
    for _ in range(4):
        t = rng.integers(0, 7, (23, 31)).astype(np.uint8)
        t[rng.random(t.shape) < 0.1] = 255
        t[t == 5] = 6  # class 5 absent from ground truth, sometimes predicted
        p = np.where(rng.random(t.shape) < 0.7, t, rng.integers(0, 7, t.shape)).astype(np.uint8)
        p[p == 255] = 0
        metrics.update(p, t)
        preds.append(p)
        labels.append(t)
    assert abs(metrics.miou - reference_miou(preds, labels, 7)) < 1e-9


def test_confusion_matrix_ignores_void_and_counts_rows_as_truth():
    t = np.array([[0, 1, 255], [1, 1, 2]], np.uint8)
    p = np.array([[0, 0, 1], [1, 2, 2]], np.uint8)
    cm = confusion_matrix(p, t, 3)
    assert cm.sum() == 5 and cm[1, 0] == 1 and cm[1, 1] == 1 and cm[1, 2] == 1 and cm[2, 2] == 1
    m = SegMetrics(4)
    m.update(p, t)
    assert np.isnan(m.iou[3])  # class absent everywhere: excluded from the mean (sssegmentation's nanmean)
    assert abs(m.pixel_accuracy - 3 / 5) < 1e-12


def test_agreement():
    a = Agreement()
    a.update(np.array([1, 2, 3]), np.array([1, 2, 0]))
    assert abs(a.value - 2 / 3) < 1e-12
