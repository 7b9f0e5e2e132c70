"""``cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)`` of a uint8 frame, bit for bit, as graph ops.

The host path (``preprocess.resize_image``, sssegmentation's Resize) resizes the uint8 frame with OpenCV, which
works in fixed point (``imgproc/src/resize.cpp``):

* per output column ``x``: ``fx = float32((x + 0.5) * src / dst - 0.5)``, source column ``sx = floor(fx)``,
  weights ``a0 = round((1 - frac) * 2048)``, ``a1 = round(frac * 2048)``; a column left of the first or right of
  the last source column takes that column with weight 2048 (``sx`` clamped, ``frac = 0``);
* the same per output row, without the clamp (a row index is clipped to the image, its weights stay);
* the horizontal pass sums pixel x weight in integers; the vertical pass combines two of those rows as its SIMD
  kernel rounds: ``v = ((r0 >> 4) * b0 >> 16) + ((r1 >> 4) * b1 >> 16)``, then ``(v + 2) >> 2``.

A float bilinear Resize differs from that by up to one grey level per pixel (11-bit weights, rounding to uint8),
enough to move labels (docs/results.md, raw-frame parity). This module reproduces the integer arithmetic
instead, so a raw-frame graph sees the very network input the host path builds.

Graph form: no Gather, no Resize, no coordinate arithmetic (nothing depends on how a backend rounds a sampling
coordinate, where the half-pixel mapping of an odd integer downscale lands exactly on source pixels). An axis of
``s`` pixels resized to ``d`` is cut into ``g = gcd(s, d)`` blocks of ``p = s / g`` source and ``q = d / g``
output pixels; every tap of a block's outputs lies in the block or is the adjacent pixel of a neighbour block,
so a block-local matrix (``p`` (+1 or 2 neighbours) x ``q``, one per block) does a pass as one batched MatMul.
The frame stays NHWC, so the column matrix is that matrix with a ``C x C`` channel block per weight: about
``(p + 2) * C`` multiply-adds per output value (2048 -> 1024: 6; 1280 -> 480: 24). Coprime sizes make ``p`` the
whole axis (one dense matrix): :class:`Cv2LinearResize` warns when a frame costs over 1 GMAC. Rows are selected first (0/1
matrices on uint8 values), columns weighted second (integer weights <= 2048 on uint8 values): both MatMuls are
exact in FP32 and in TF32 (11-bit mantissa), whatever the backend's accumulation order, since every partial
sum is an integer below 2**24. The rounding is int32 arithmetic (Cast, Div, Mul, Add; all values >= 0, so
truncating division is the shift).
"""

from __future__ import annotations

import logging
import math
from typing import Tuple

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

COEF_SCALE = 2048  # OpenCV's INTER_RESIZE_COEF_SCALE (11 fractional bits)
WARN_MACS = 1e9  # multiply-adds a frame above which the sizes deserve a second look


def linear_taps(src: int, dst: int, clamp: bool) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's INTER_LINEAR taps along one axis: source indices (i0, i1) and integer weights (w0, w1) per
    output pixel. ``clamp``: the column rule (out-of-image taps clamped with weight 2048 on the edge pixel);
    otherwise the row rule (indices clipped, weights kept)."""
    scale = 1.0 / (dst / src)  # as OpenCV: inv_scale = dst / src in double, scale = 1 / inv_scale
    f = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    i0 = np.floor(f).astype(np.int64)
    frac = (f - i0.astype(np.float32)).astype(np.float32)
    if clamp:  # left of the first or on/right of the last column: that column alone (weights 2048, 0)
        frac[(i0 < 0) | (i0 >= src - 1)] = 0
    w0 = np.rint((np.float32(1) - frac) * np.float32(COEF_SCALE)).astype(np.int64)
    w1 = np.rint(frac * np.float32(COEF_SCALE)).astype(np.int64)
    return np.clip(i0, 0, src - 1), np.clip(i0 + 1, 0, src - 1), w0, w1


def block_matrix(src: int, dst: int, taps: Tuple[Tuple[np.ndarray, np.ndarray], ...],
                 separate: bool) -> Tuple[np.ndarray, int, int]:
    """The taps of a pass as block-local matrices, ``(lead + p + tail, k * q)`` for ``k`` (index, weight) pairs
    (``separate``: their outputs side by side; otherwise summed, ``k = 1``), or ``(g, lead + p + tail, k * q)``
    where blocks differ; ``lead``/``tail`` (0 or 1): whether the previous block's last pixel or the next block's
    first one is read. The shared 2D form is taken when it is exact for every block, the first and last block
    reading their own edge pixel in place of the missing neighbour (as OpenCV clips rows; for columns only where
    its clamped edge weights sum alike)."""
    g = math.gcd(src, dst)
    p, q = src // g, dst // g
    m = np.zeros((g, p + 2, (len(taps) if separate else 1) * q), np.float32)
    out = np.arange(dst)
    block, j = out // q, out % q
    for k, (index, weight) in enumerate(taps):
        local = index - block * p + 1  # 0: the previous block's last pixel, p + 1: the next block's first
        if local.min() < 0 or local.max() > p + 1:
            raise AssertionError(f"resize {src} -> {dst}: a tap outside its block's neighbourhood")
        np.add.at(m, (block, local, (k if separate else 0) * q + j), weight.astype(np.float32))
    lead, tail = int(m[:, 0].any()), int(m[:, -1].any())
    shared = m[g // 2].copy()
    first, last = shared.copy(), shared.copy()
    first[1] += first[0]
    first[0] = 0
    last[p] += last[p + 1]
    last[p + 1] = 0
    if (m[1:-1] == shared).all() and (m[0] == first).all() and (m[-1] == last).all():
        m = shared
    return m[..., 1 - lead: p + 1 + tail, :], lead, tail


def _blocks(x: torch.Tensor, dim: int, g: int, p: int, lead: int, tail: int, unit: int = 1) -> torch.Tensor:
    """``x`` (``g * p`` pixels of ``unit`` values each along ``dim``) -> blocks along ``dim`` (g) and ``dim + 1``
    ((lead + p + tail) * unit)."""
    shape = list(x.shape)
    shape[dim: dim + 1] = [g, p * unit]
    shape[0] = -1  # the batch stays symbolic
    xb = x.reshape(shape)
    parts = [xb]
    if lead:  # the previous block's last pixel (block 0: its own first one, never read)
        first = xb.narrow(dim, 0, 1).narrow(dim + 1, 0, unit)
        prev = xb.narrow(dim, 0, g - 1).narrow(dim + 1, (p - 1) * unit, unit)
        parts.insert(0, torch.cat([first, prev], dim) if g > 1 else first)
    if tail:  # the next block's first pixel (last block: its own last one, never read)
        last = xb.narrow(dim, g - 1, 1).narrow(dim + 1, (p - 1) * unit, unit)
        parts.append(torch.cat([xb.narrow(dim, 1, g - 1).narrow(dim + 1, 0, unit), last], dim) if g > 1 else last)
    return torch.cat(parts, dim + 1) if len(parts) > 1 else xb


class Cv2LinearResize(nn.Module):
    """Float ``N x sh x sw x C`` (the frame's own layout) holding uint8 values -> ``N x dh x dw x C``, equal to
    OpenCV's uint8 INTER_LINEAR resize of the same pixels (values stay integers 0..255, as float). ``flip``
    reverses the channel order on the way (folded into the column weights: BGR -> RGB costs nothing).

    Channels stay interleaved, as in the frame: a pixel is ``C`` adjacent values and the column weights are the
    block matrix with each weight on the diagonal of a ``C x C`` block, so nothing at the frame size is transposed
    or copied besides the Cast and the two MatMuls."""

    def __init__(self, src_hw: Tuple[int, int], dst_hw: Tuple[int, int], channels: int = 3, flip: bool = False) -> None:
        super().__init__()
        (self.sh, self.sw), (self.dh, self.dw), self.channels, self.flip = src_hw, dst_hw, channels, flip
        rows0, rows1, b0, b1 = linear_taps(self.sh, self.dh, clamp=False)
        cols0, cols1, a0, a1 = linear_taps(self.sw, self.dw, clamp=True)
        self.same_rows = self.sh == self.dh  # then b0 = 2048 and b1 = 0 everywhere: no row selection
        self.same_cols = self.sw == self.dw  # then a0 = 2048: the column pass is a scale
        self.gy, self.qy = math.gcd(self.sh, self.dh), self.dh // math.gcd(self.sh, self.dh)
        self.gx = math.gcd(self.sw, self.dw)
        one = np.ones(self.dh, np.int64)
        sel, self.lead_y, self.tail_y = block_matrix(self.sh, self.dh, ((rows0, one), (rows1, one)), separate=True)
        cols, self.lead_x, self.tail_x = block_matrix(self.sw, self.dw, ((cols0, a0), (cols1, a1)), separate=False)
        channel_map = np.eye(channels, dtype=np.float32)[:, ::-1] if flip else np.eye(channels, dtype=np.float32)
        cols = np.kron(cols, channel_map)  # (.., L, q) -> (.., L * C, q * C): input (l, c) -> output (j, c')
        self.register_buffer("row_select", torch.from_numpy(sel).transpose(-1, -2).contiguous(), persistent=False)
        self.register_buffer("col_weights", torch.from_numpy(np.ascontiguousarray(cols)), persistent=False)
        self.register_buffer("b0", torch.from_numpy(b0.astype(np.int32)).view(self.gy, self.qy, 1), persistent=False)
        self.register_buffer("b1", torch.from_numpy(b1.astype(np.int32)).view(self.gy, self.qy, 1), persistent=False)
        if self.macs() > WARN_MACS:
            log.warning("resizing %dx%d frames to %dx%d in the graph costs %.1f GMAC a frame (common divisors of the "
                        "sizes: rows %d, columns %d; the block matrices grow as the divisors shrink): prefer a network "
                        "size sharing a larger divisor with the frame size", self.sh, self.sw, self.dh, self.dw,
                        self.macs() / 1e9, self.gy, self.gx)

    def macs(self) -> int:
        """Multiply-adds of the two MatMuls for one frame."""
        c, rows = self.channels, (self.sh if self.same_rows else 2 * self.dh)
        row_pass = 0 if self.same_rows else 2 * self.dh * self.row_select.shape[-1] * self.sw * c
        col_pass = 0 if self.same_cols else rows * self.gx * self.col_weights.shape[-2] * self.col_weights.shape[-1]
        return int(row_pass + col_pass)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, (sh, sw), (dh, dw) = self.channels, (self.sh, self.sw), (self.dh, self.dw)
        if self.same_rows:  # N, 1, 1 * sh, sw * C: one "tap" per row
            rows, gy, k, q = x.reshape(-1, 1, sh, sw * c), 1, 1, sh
        else:  # N, gy, lead + py + tail, sw * C -> N, gy, 2 * qy, sw * C: the rows of tap 0, then of tap 1
            blocks = _blocks(x.reshape(-1, sh, sw * c), 1, self.gy, sh // self.gy, self.lead_y, self.tail_y)
            rows, gy, k, q = torch.matmul(self.row_select, blocks), self.gy, 2, self.qy
        if self.same_cols:
            if self.flip:
                rows = rows.reshape(-1, gy * k * q, sw, c).flip(-1)
            weighted = (rows * float(COEF_SCALE)).reshape(-1, gy, k * q, dw * c)
        else:  # ..., sw * C -> ..., gx, (lead + px + tail) * C -> ..., gx, qx * C -> ..., dw * C
            blocks = _blocks(rows.reshape(-1, gy * k * q, sw * c), 2, self.gx, sw // self.gx, self.lead_x,
                             self.tail_x, c)
            if self.col_weights.dim() == 3:  # a matrix per block: one row vector per block and matrix
                blocks = blocks.unsqueeze(-2)
            weighted = torch.matmul(blocks, self.col_weights).reshape(-1, gy, k * q, dw * c)
        r = weighted.to(torch.int32)  # integers <= 255 * 2048, exact in float
        if self.same_rows:  # b0 = 2048, b1 = 0
            v = torch.div(torch.div(r, 16, rounding_mode="trunc") * COEF_SCALE, 65536, rounding_mode="trunc")
        else:
            r0, r1 = r.narrow(2, 0, q), r.narrow(2, q, q)
            v = (torch.div(torch.div(r0, 16, rounding_mode="trunc") * self.b0, 65536, rounding_mode="trunc")
                 + torch.div(torch.div(r1, 16, rounding_mode="trunc") * self.b1, 65536, rounding_mode="trunc"))
        v = torch.div(v + 2, 4, rounding_mode="trunc")
        return v.reshape(-1, dh, dw, c).to(torch.float32)
