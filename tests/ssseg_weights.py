"""Deterministic PSPNet weights from a key/shape list, with numpy only (independent of torch's RNG).

Shared by the reference generator (run once against sssegmentation's own code, see
test_ssseg_parity.py) and the parity tests, so both models get bit-identical weights.

One ``np.random.default_rng(seed)`` draws every tensor, keys in sorted order (so the result does not
depend on the state-dict order, which differs between sssegmentation versions). N(0, v) means
mean 0, *variance* v:

- conv weight (4-D): N(0, 2 / fan_in) (He normal); conv bias (a ``bias`` without BN statistics): N(0, 0.25)
- BatchNorm weight U(0.5, 1.5), bias N(0, 0.04), running_mean N(0, 0.04), running_var U(0.5, 1.5),
  num_batches_tracked 1 (int64, shape ())

Random BatchNorm is essential: with PyTorch's default BN a fresh PSPNet's logits hardly depend on the
input, and wrong dilations or channel orders go unnoticed (sssegmentation-pspnet.md, section 3).
The statistics do not match the activations, so with He-normal convs the residual stream roughly
doubles its variance per block (logit range ~5e2 for R-18, ~4e4 for R-50, ~2e8 for R-101): compare
relative to the logit range. At that scale the additive terms of deep layers (BN bias and running_mean
in layer4, the PPM) change R-101's logits by < 1e-6 of the range, below any tolerance; ``conv_var=1.0``
(N(0, 1/fan_in)) keeps every network at a trained model's scale (range ~10-50), where they show.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Iterable, Mapping, Sequence, Tuple, Union

import numpy as np

if TYPE_CHECKING:
    import torch

Layout = Union[Mapping[str, Sequence[int]], Iterable[Tuple[str, Sequence[int]]]]


def make_weights(layout: Layout, seed: int = 0, conv_var: float = 2.0) -> Dict[str, np.ndarray]:
    """Weights for ``layout`` (a key -> shape mapping, or (key, shape) pairs), as numpy arrays.

    Conv weights are N(0, conv_var / fan_in).
    """
    pairs = layout.items() if isinstance(layout, Mapping) else layout
    shapes = {key: tuple(int(n) for n in shape) for key, shape in pairs}
    rng = np.random.default_rng(seed)
    out: Dict[str, np.ndarray] = {}
    for key in sorted(shapes):
        shape = shapes[key]
        prefix, _, leaf = key.rpartition(".")
        is_norm = f"{prefix}.running_mean" in shapes
        if leaf == "num_batches_tracked":
            out[key] = np.array(1, np.int64)
        elif len(shape) == 4 and leaf == "weight":
            fan_in = shape[1] * shape[2] * shape[3]
            out[key] = rng.normal(0.0, (conv_var / fan_in) ** 0.5, shape).astype(np.float32)
        elif leaf == "bias" and not is_norm:
            out[key] = rng.normal(0.0, 0.5, shape).astype(np.float32)
        elif is_norm and leaf in ("weight", "running_var"):
            out[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif is_norm and leaf in ("bias", "running_mean"):
            out[key] = rng.normal(0.0, 0.2, shape).astype(np.float32)
        else:
            raise ValueError(f"make_weights: no rule for {key} with shape {shape}")
    return out


def state_dict_for(model: torch.nn.Module, seed: int = 0, conv_var: float = 2.0) -> Dict[str, torch.Tensor]:
    """:func:`make_weights` for ``model``'s own state-dict layout, as torch tensors (for load_state_dict)."""
    import torch

    layout = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    return {key: torch.from_numpy(value) for key, value in make_weights(layout, seed, conv_var).items()}
