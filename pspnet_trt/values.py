"""Numbers as users type them: ``argparse`` types shared by every subcommand, so a bad value is refused while the
command line is parsed (one line, exit 2, before anything is read or written). Standard library only."""

from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    """An integer >= 1 (a count: threads, images, classes)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number: pass 1 or more") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive count: pass 1 or more")
    return value


def unit_interval(text: str) -> float:
    """A finite number in [0, 1] (an opacity, a fraction)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number: pass a value from 0 to 1") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is outside 0..1: pass a value from 0 to 1")
    return value
