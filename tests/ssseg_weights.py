"""Deterministic weights for a state-dict layout, from numpy only (independent of torch's RNG).

Shared by the reference generator (run once against sssegmentation's own code) and the parity
test, so both models get bit-identical weights. BatchNorm parameters and statistics are random:
with default BN a fresh PSPNet's logits hardly depend on the input (sssegmentation-pspnet.md, section 3).
"""

from __future__ import annotations

from typing import Dict, Iterable, Tuple

import numpy as np


def make_weights(layout: Iterable[Tuple[str, Tuple[int, ...]]], seed: int = 0) -> Dict[str, np.ndarray]:
    """``layout``: (key, shape) pairs; iterated in sorted key order so the result does not depend on it."""
    rng = np.random.default_rng(seed)
    out: Dict[str, np.ndarray] = {}
    for key, shape in sorted(layout):
        shape = tuple(shape)
        if key.endswith("num_batches_tracked"):
            out[key] = np.array(1, np.int64)
        elif key.endswith("running_var"):
            out[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif key.endswith("running_mean"):
            out[key] = rng.normal(0, 0.2, shape).astype(np.float32)
        elif len(shape) == 4:  # conv weight, He normal; fan-in scaled down a little to keep depth stable
            fan_in = shape[1] * shape[2] * shape[3]
            out[key] = rng.normal(0, (1.0 / fan_in) ** 0.5, shape).astype(np.float32)
        elif key.endswith("weight"):  # BN gamma
            out[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:  # BN beta, conv bias
            out[key] = rng.normal(0, 0.2, shape).astype(np.float32)
    return out
