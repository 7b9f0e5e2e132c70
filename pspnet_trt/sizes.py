"""Image sizes as users type them: ``"HxW"`` -> ``(H, W)``. Core: every stage's CLI parses sizes here."""

from __future__ import annotations

from typing import Tuple

from .errors import UserError

MIN_SIDE = 32  # PSPNet's output stride 8/16 needs at least this much input
# The largest side accepted: 16384 is TensorRT's and most codecs' largest image side, 8x a 2048-wide Cityscapes
# frame; a bgr8 graph of 100000x100000 would need hundreds of GB before anything could refuse it.
MAX_SIDE = 16384


def parse_size(text: str, what: str = "input size", min_side: int = MIN_SIDE) -> Tuple[int, int]:
    """``"512x1024"`` -> (512, 1024) (H x W); a :class:`UserError` naming the problem otherwise."""
    try:
        h, w = (int(v) for v in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise UserError(f"{what} must look like HxW (e.g. 512x1024), got {text!r}") from None
    return check_size((h, w), what, min_side)


def check_size(size: Tuple[int, int], what: str = "input size", min_side: int = MIN_SIDE) -> Tuple[int, int]:
    """``size`` (H, W) if each side is within ``min_side``..:data:`MAX_SIDE`; a :class:`UserError` otherwise."""
    h, w = (int(v) for v in size)
    if h < min_side or w < min_side:
        raise UserError(f"{what} {h}x{w} is too small: PSPNet needs at least {min_side}x{min_side} "
                        "(output stride 8/16)")
    if h > MAX_SIDE or w > MAX_SIDE:
        raise UserError(f"{what} {h}x{w} is too large: each side must be at most {MAX_SIDE}; resize the frames "
                        "before they reach the model")
    return h, w

