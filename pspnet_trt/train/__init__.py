"""Training: sssegmentation's PSPNet recipe, DDP through torchrun, exact resume (torch).

``train`` and ``poly_lr`` are imported on first use, so ``pspnet-trt --help`` works without torch.
"""

from __future__ import annotations

from typing import Any

from .config import CPU_OVERRIDES, TrainConfig

__all__ = ["CPU_OVERRIDES", "TrainConfig", "poly_lr", "train"]


def __getattr__(name: str) -> Any:
    if name in ("train", "poly_lr"):
        from ..deps import require

        require("torch", "training")
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'pspnet_trt.train' has no attribute {name!r}")
