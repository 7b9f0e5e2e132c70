"""Adaptive average pooling lowered *exactly* to fixed ops for a static feature size.

``nn.AdaptiveAvgPool2d(b)`` averages, for output row i, input rows [floor(i*H/b), ceil((i+1)*H/b)).
Two lowerings, chosen per pool:

* **uniform windows** (every window has the same length k and window i starts at i*s; e.g. H
  divisible by b, but also H=45, b=2: k=23, s=22): one ``AveragePool(kernel, stride)``, TensorRT's
  native pooling layer, which INT8/FP16 kernels handle without reformatting.
* **otherwise** (H=64, b=3 or b=6; or a side shorter than b, e.g. a 1-pixel feature map, whose
  windows repeat): ``P_h @ X @ P_w^T`` with constant averaging matrices
  (``P[i, j] = 1/len_i`` inside window i). Two constant MatMuls are static, exact (up to float
  summation order), free of Gather/Where/Shape ops, and TensorRT runs them as plain GEMMs. The
  alternative, per-bin Slice+ReduceMean+Concat, needs b^2 slices per pool (36 for b=6) and breaks
  layer fusion; a single approximate AveragePool (mmdeploy's rewrite) is off by up to 14.7 %.
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
from torch import nn


def adaptive_windows(size: int, bins: int) -> List[Tuple[int, int]]:
    """PyTorch's adaptive pooling windows [start, end) along one axis."""
    if size < 1 or bins < 1:
        raise ValueError(f"size and bins must be positive, got {size}, {bins}")
    return [(math.floor(i * size / bins), math.ceil((i + 1) * size / bins)) for i in range(bins)]


def uniform_kernel(size: int, bins: int) -> Optional[Tuple[int, int]]:
    """(kernel, stride) if the adaptive windows are those of a plain pooling, else None."""
    windows = adaptive_windows(size, bins)
    kernel = windows[0][1] - windows[0][0]
    stride = windows[1][0] - windows[0][0] if bins > 1 else 1
    if stride < 1:  # a side smaller than the bins (e.g. 1 pixel): windows repeat, which no pooling stride expresses
        return None
    if all(end - start == kernel and start == i * stride for i, (start, end) in enumerate(windows)):
        return kernel, stride
    return None


def pooling_matrix(size: int, bins: int) -> torch.Tensor:
    """``bins`` x ``size`` matrix whose row i averages window i."""
    m = torch.zeros(bins, size, dtype=torch.float32)
    for i, (start, end) in enumerate(adaptive_windows(size, bins)):
        m[i, start:end] = 1.0 / (end - start)
    return m


class FixedAdaptiveAvgPool2d(nn.Module):
    """``AdaptiveAvgPool2d(bins)`` for one static input size ``(H, W)``, built from fixed ops."""

    def __init__(self, bins: int, input_hw: Tuple[int, int]) -> None:
        super().__init__()
        self.bins, self.input_hw = bins, tuple(input_hw)
        h, w = self.input_hw
        kh, kw = uniform_kernel(h, bins), uniform_kernel(w, bins)
        self.pool: Optional[nn.AvgPool2d] = None
        if kh is not None and kw is not None:
            self.pool = nn.AvgPool2d(kernel_size=(kh[0], kw[0]), stride=(kh[1], kw[1]))
        else:
            self.register_buffer("ph", pooling_matrix(h, bins))  # (b, H)
            self.register_buffer("pwt", pooling_matrix(w, bins).t().contiguous())  # (W, b)

    @property
    def lowering(self) -> str:
        return "AveragePool" if self.pool is not None else "MatMul"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing() and tuple(x.shape[-2:]) != self.input_hw:
            raise ValueError(f"this pool was lowered for {self.input_hw} inputs, got {tuple(x.shape[-2:])}")
        if self.pool is not None:
            return self.pool(x)
        return torch.matmul(self.ph, torch.matmul(x, self.pwt))
