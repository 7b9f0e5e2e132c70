"""Training: sssegmentation's PSPNet recipe, DDP through torchrun, exact resume (torch)."""

from __future__ import annotations

from .config import CPU_OVERRIDES, TrainConfig
from .trainer import poly_lr, train

__all__ = ["CPU_OVERRIDES", "TrainConfig", "poly_lr", "train"]
