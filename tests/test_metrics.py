"""Metrics: the bincount confusion matrix against an independent per-class set computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pspnet_trt.metrics import Agreement, SegMetrics, confusion_matrix


def reference_scores(preds, labels, num_classes, ignore=255):
    """Independent computation: per-class sets of (image, pixel) positions, counted over the whole dataset.

    Returns per-class IoU (None for a class in neither labels nor predictions), mIoU over the others, and
    pixel accuracy. Labels outside [0, num_classes) (void, 255) are not scored.
    """
    truth = {c: set() for c in range(num_classes)}
    predicted = {c: set() for c in range(num_classes)}
    scored = correct = 0
    for k, (p, t) in enumerate(zip(preds, labels)):
        for j, (pv, tv) in enumerate(zip(p.ravel().tolist(), t.ravel().tolist())):
            if tv == ignore or tv >= num_classes:
                continue
            truth[tv].add((k, j))
            predicted[pv].add((k, j))
            scored += 1
            correct += pv == tv
    ious = []
    for c in range(num_classes):
        union = truth[c] | predicted[c]
        ious.append(len(truth[c] & predicted[c]) / len(union) if union else None)
    present = [v for v in ious if v is not None]
    return ious, math.fsum(present) / len(present), correct / scored


def random_case(rng, num_classes, n_images):
    preds, labels = [], []
    for _ in range(n_images):
        h, w = rng.integers(5, 40, 2)
        t = rng.integers(0, num_classes, (h, w)).astype(np.uint8)
        t[rng.random(t.shape) < 0.1] = 255  # void
        t[rng.random(t.shape) < 0.02] = num_classes + 3  # out-of-range label value: not scored either
        t[t == 2] = 3  # class 2 absent from the labels, sometimes predicted (IoU 0)
        p = np.where(rng.random(t.shape) < 0.7, t, rng.integers(0, num_classes, t.shape)).astype(np.uint8)
        p[p >= num_classes] = 0
        p[p == num_classes - 1] = 0  # last class absent from predictions and (below) from labels: IoU undefined
        t[t == num_classes - 1] = 255
        preds.append(p)
        labels.append(t)
    return preds, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_miou_matches_independent_reference_to_1e9(seed):
    rng = np.random.default_rng(seed)
    num_classes = 7
    preds, labels = random_case(rng, num_classes, n_images=5)
    metrics = SegMetrics(num_classes)
    for p, t in zip(preds, labels):
        metrics.update(p, t)
    ious, miou, accuracy = reference_scores(preds, labels, num_classes)
    assert ious[num_classes - 1] is None and np.isnan(metrics.iou[num_classes - 1])
    assert ious[2] == 0.0 and metrics.iou[2] == 0.0
    for c in range(num_classes - 1):
        assert abs(metrics.iou[c] - ious[c]) < 1e-9
    assert abs(metrics.miou - miou) < 1e-9
    assert abs(metrics.pixel_accuracy - accuracy) < 1e-9
    assert 0.3 < miou < 0.9  # a non-trivial case


def test_confusion_matrix_ignores_void_and_counts_rows_as_truth():
    t = np.array([[0, 1, 255], [1, 1, 2]], np.uint8)
    p = np.array([[0, 0, 1], [1, 2, 2]], np.uint8)
    cm = confusion_matrix(p, t, 3)
    assert cm.tolist() == [[1, 0, 0], [1, 1, 1], [0, 0, 1]]
    m = SegMetrics(4)
    m.update(p, t)
    assert np.isnan(m.iou[3])  # class absent everywhere: excluded from the mean (sssegmentation's nanmean)
    assert abs(m.miou - (1 / 2 + 1 / 3 + 1 / 2) / 3) < 1e-12
    assert abs(m.pixel_accuracy - 3 / 5) < 1e-12
    with pytest.raises(ValueError, match="differ in shape"):
        confusion_matrix(p, t[:, :2], 3)


def test_agreement():
    a = Agreement()
    a.update(np.array([1, 2, 3]), np.array([1, 2, 0]))
    a.update(np.array([[5, 5]]), np.array([[5, 4]]), valid=np.array([[True, False]]))
    assert a.same == 3 and a.total == 4


def test_out_of_range_predictions_count_as_wrong_not_as_the_last_class():
    """Issue 14.1: a prediction of 255 (or C) on a pixel whose truth is the last class is wrong, not a hit."""
    t = np.array([[2, 2, 2, 0], [0, 1, 255, 1]], np.uint8)
    p = np.array([[2, 255, 3, 0], [0, 1, 255, 7]], np.uint8)  # 4 out-of-range predictions, one on a void pixel
    m = SegMetrics(3)
    m.update(p, t)
    assert m.invalid_pixels == 4  # every pixel of the prediction, labelled or not
    assert m.invalid_labelled == 2 + 1  # truth 2 twice, truth 1 once
    # class 2: truth at 3 pixels, predicted right at 1, the two out-of-range ones are misses
    assert m.iou[2] == pytest.approx(1 / 3)
    assert m.iou[1] == pytest.approx(1 / 2)  # truth 1 at 2 pixels, one of them out of range
    assert m.iou[0] == pytest.approx(1.0)
    assert m.pixel_accuracy == pytest.approx(4 / 7)
    # against the independent set computation, with out-of-range predictions as a class of their own
    ious, _, accuracy = reference_scores([np.where(p >= 3, 3, p)], [t], 4)
    assert [m.iou[c] for c in range(3)] == pytest.approx(ious[:3]) and m.pixel_accuracy == pytest.approx(accuracy)
