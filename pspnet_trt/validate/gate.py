"""The gate: one rule for every check of an artifact against PyTorch (``validate``, ``make engine``'s check with
and without a dataset).

An artifact passes when

* its labels agree with its PyTorch reference (:meth:`~pspnet_trt.runtime.torch_backend.TorchBackend.reference_of`:
  the same model computing what the artifact's graph computes, fed the same input) on at least the floor of its
  precision, :data:`AGREEMENT_FLOORS`, % of the pixels (every pixel, labelled or not);
* it predicts no label outside the class range;
* with a dataset, its mIoU is at most ``tolerance`` points below PyTorch's.

The mIoU alone cannot tell a wrong graph: an artifact whose final upsample is nearest instead of bilinear scores
a mIoU at PyTorch's (+0.09) while 12.5 % of its pixels differ. The agreement floor catches it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional

# Least % of pixels on which an artifact of each precision must give its PyTorch reference's label.
#
# Where the numbers come from: benchmarks/results/agreement_floor_vm_2026-12-07.json, written by
#   CAMVID_ROOT=/path/to/camvid python benchmarks/agreement_floor.py --checkpoint samples/r18_os8_camvid_camvid.pth
# (AMD EPYC, 2 shared cores, ONNX Runtime CPU, 2026-12-07): the shipped r18_os8_camvid at 360x480 (deploy size),
# 240x320 and 180x240, on the first 20 CamVid test images, every artifact kind the project writes (normalized
# input with logits / labels output, pixels input, bgr8 360x480 frames with frame_upsample logits and labels),
# FP32 and FP16 exports and their INT8 graphs (calibrated on 32 training images). Lowest agreement measured, and
# the floor, set with a stated margin rather than tuned (other models, e.g. a MobileNetV2 INT8 one, and TensorRT
# engines, whose FP32 may run TF32, have not been measured):
#   fp32: lowest 99.9999 % (1 pixel in 10^6)  -> floor 99.9 (1000x the measured disagreement)
#   fp16: lowest 99.979 %                     -> floor 99.5 (24x the measured disagreement of 0.021 %)
#   int8: lowest 99.076 %                     -> floor 96.0 (4.3x the measured disagreement of 0.92 %; the
#         8-minute demo model measured 98.7 %)
# A wrong graph falls far below: the FP32 logits graph with its final Resize nearest instead of linear agrees on
# 87.5 % at 180x240 (mIoU +0.09: the mIoU tolerance alone passed it), 89.4 % at 240x320, 91.6 % at 360x480.
AGREEMENT_FLOORS = {"fp32": 99.9, "fp16": 99.5, "int8": 96.0}


def agreement_floor(precision: str) -> float:
    """The least agreement (%) with PyTorch of an artifact of ``precision`` (one of ``ARTIFACT_PRECISIONS``)."""
    return AGREEMENT_FLOORS[precision]


@dataclass
class Verdict:
    """Pass or fail, and why it failed (one phrase per broken rule)."""

    passed: bool
    why: List[str] = field(default_factory=list)


def gate(precision: str, agreement: float, invalid_pixels: int, delta: Optional[float] = None,
         tolerance: Optional[float] = None, floor: Optional[float] = None) -> Verdict:
    """The verdict on one artifact of ``precision``: ``agreement`` (%) with its PyTorch reference against
    ``floor`` (default: :func:`agreement_floor`), ``invalid_pixels`` (labels outside the class range) and, with a
    dataset, ``delta`` (its mIoU minus PyTorch's, points) against ``tolerance``. NaN never passes."""
    floor = agreement_floor(precision) if floor is None else floor
    why = []
    if not (agreement >= floor):  # NaN included
        why.append(f"agreement {agreement:.3f} % below the {precision} floor {floor:g} %")
    if invalid_pixels:
        why.append(f"{invalid_pixels} labels outside the class range")
    if tolerance is not None:
        if delta is None or not math.isfinite(delta):
            why.append("no mIoU scored")
        elif delta < -tolerance:
            why.append(f"mIoU {delta:+.2f} points vs PyTorch, beyond the tolerance {tolerance:g}")
    return Verdict(not why, why)
