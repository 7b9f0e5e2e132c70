"""``pspnet-trt debug``: which layer makes an FP16/INT8 artifact leave its reference (Polygraphy)."""

from .compare import Comparison, TensorRow, compare_layers, first_divergence, module_of
from .core import debug_artifacts
from .fix import FixResult, fewest_kept, fp32_islands

__all__ = ["Comparison", "FixResult", "TensorRow", "compare_layers", "debug_artifacts", "fewest_kept",
           "first_divergence", "fp32_islands", "module_of"]
