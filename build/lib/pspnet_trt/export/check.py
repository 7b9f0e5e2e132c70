"""PyTorch vs ONNX Runtime on the same inputs: max |delta logit|, relative error, argmax agreement."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, Optional, Union

import numpy as np

from ..deploy import DeployInfo
from ..preprocess import make_batch

if TYPE_CHECKING:
    from torch import nn


@dataclass
class ParityReport:
    onnx: str
    precision: str
    input_size: tuple
    images: int
    max_abs_logit_diff: float
    logit_range: float
    relative_error: float  # max |delta| / (max - min) of the PyTorch logits
    argmax_agreement: float  # fraction of pixels with the same label

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)

    def __str__(self) -> str:
        return (f"{self.onnx} ({self.precision}, {self.input_size[0]}x{self.input_size[1]}, {self.images} images): "
                f"max|dlogit| {self.max_abs_logit_diff:.3g} of range {self.logit_range:.3g} "
                f"(relative {self.relative_error:.2e}), argmax agreement {100 * self.argmax_agreement:.4f} %")


def check_export(model: nn.Module, onnx_path: Union[str, Path], images: Optional[Iterable[np.ndarray]] = None,
                 num_random: int = 2, seed: int = 0, threads: Optional[int] = None) -> ParityReport:
    """Run ``model`` (PyTorch) and ``onnx_path`` (ONNX Runtime) on the same batches and compare.

    ``images`` are BGR uint8 images of any size (preprocessed with the file's own metadata);
    without them, ``num_random`` random normalised inputs are used. Needs an ONNX exported with
    ``logits`` in its outputs (``--output logits`` or ``both``); labels are compared when present.
    """
    from ..runtime.ort import OrtBackend
    from ..runtime.torch_backend import TorchBackend

    ort_backend = OrtBackend(onnx_path, threads=threads)
    info: DeployInfo = ort_backend.info
    if "logits" not in info.output_names:
        raise ValueError(f"{onnx_path} has no logits output (output={info.output}); export with --output both to check it")
    torch_backend = TorchBackend(model, info.with_(output="both"))
    if images is not None:
        batches = [make_batch([im], info.input_size, info.normalization) for im in images]
    else:
        rng = np.random.default_rng(seed)
        batches = [rng.standard_normal((1, 3, *info.input_size)).astype(np.float32) for _ in range(num_random)]
    max_diff, lo, hi, same, total = 0.0, np.inf, -np.inf, 0, 0
    for batch in batches:
        if info.batch and info.batch > 1:
            batch = np.repeat(batch, info.batch, axis=0)
        ours, ref = ort_backend.run(batch), torch_backend.run(batch)
        max_diff = max(max_diff, float(np.abs(ours["logits"] - ref["logits"]).max()))
        lo, hi = min(lo, float(ref["logits"].min())), max(hi, float(ref["logits"].max()))
        labels = ours["labels"] if "labels" in ours else ours["logits"].argmax(1)
        same += int((labels == ref["labels"]).sum())
        total += labels.size
    ort_backend.close()
    span = max(hi - lo, 1e-12)
    return ParityReport(str(onnx_path), info.precision, tuple(info.input_size), len(batches), max_diff, span,
                        max_diff / span, same / total)
