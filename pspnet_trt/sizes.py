"""Image sizes as users type them: ``"HxW"`` -> ``(H, W)``. Core: every stage's CLI parses sizes here."""

from __future__ import annotations

from typing import Tuple

from .errors import UserError

MIN_SIDE = 32  # PSPNet's output stride 8/16 needs at least this much input


def parse_size(text: str, what: str = "input size", min_side: int = MIN_SIDE) -> Tuple[int, int]:
    """``"512x1024"`` -> (512, 1024) (H x W); a :class:`UserError` naming the problem otherwise."""
    try:
        h, w = (int(v) for v in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise UserError(f"{what} must look like HxW (e.g. 512x1024), got {text!r}") from None
    if h < min_side or w < min_side:
        raise UserError(f"{what} {h}x{w} is too small: PSPNet needs at least {min_side}x{min_side} "
                        "(output stride 8/16)")
    return h, w

