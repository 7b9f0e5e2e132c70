"""PyTorch vs ONNX Runtime on the same inputs: max |delta logit|, relative error, argmax agreement.

Every export is checked (``pspnet-trt check-export``):

* a normalized-input graph with a ``logits`` output: the same float batches into both, logits compared
  (max |delta|, relative to the range) and the argmax / labels compared pixel by pixel;
* any other graph (the default ``--output labels``, a raw-frame ``bgr8`` graph, a ``pixels`` graph): labels
  compared as labels. Both sides take the same input through the runtime's one door
  (:func:`pspnet_trt.runtime.inference.predict_images`): the artifact, and PyTorch computing what its graph
  computes (:func:`pspnet_trt.runtime.torch_backend.reference_info`: the same input format; the scores
  upsampled once, where the graph upsamples them). Raw-frame graphs get the images at their frame size. The
  logit fields of the report are then None.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Union

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
    max_abs_logit_diff: Optional[float]  # None when labels were compared (no logits output)
    logit_range: Optional[float]
    relative_error: Optional[float]  # max |delta| / (max - min) of the PyTorch logits
    argmax_agreement: float  # fraction of pixels with the same label
    compared: str = "logits"  # "logits" (and their argmax) or "labels"

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)

    def __str__(self) -> str:
        head = f"{self.onnx} ({self.precision}, {self.input_size[0]}x{self.input_size[1]}, {self.images} images): "
        if self.compared == "labels":
            return head + f"labels compared as labels, agreement {100 * self.argmax_agreement:.4f} %"
        return (head + f"max|dlogit| {self.max_abs_logit_diff:.3g} of range {self.logit_range:.3g} "
                f"(relative {self.relative_error:.2e}), argmax agreement {100 * self.argmax_agreement:.4f} %")


def check_export(model: nn.Module, onnx_path: Union[str, Path], images: Optional[Iterable[np.ndarray]] = None,
                 num_random: int = 2, seed: int = 0, threads: Optional[int] = None) -> ParityReport:
    """Run ``model`` (PyTorch) and ``onnx_path`` (ONNX Runtime) on the same inputs and compare (see the module
    docstring for what is compared for which export).

    ``images`` are BGR uint8 images of any size (preprocessed with the file's own metadata); without them,
    ``num_random`` random inputs are used (normalised tensors for a logits graph, random images otherwise).
    """
    from ..runtime.ort import OrtBackend

    ort_backend = OrtBackend(onnx_path, threads=threads)
    try:
        info: DeployInfo = ort_backend.info
        if info.input_format == "normalized" and "logits" in info.output_names:
            return _compare_logits(model, ort_backend, onnx_path, images, num_random, seed)
        return _compare_labels(model, ort_backend, onnx_path, images, num_random, seed)
    finally:
        ort_backend.close()


def _compare_logits(model: nn.Module, ort_backend: object, onnx_path: Union[str, Path],
                    images: Optional[Iterable[np.ndarray]], num_random: int, seed: int) -> ParityReport:
    from ..runtime.torch_backend import TorchBackend

    info: DeployInfo = ort_backend.info  # type: ignore[attr-defined]
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
        ours, ref = ort_backend.run(batch), torch_backend.run(batch)  # type: ignore[attr-defined]
        max_diff = max(max_diff, float(np.abs(ours["logits"] - ref["logits"]).max()))
        lo, hi = min(lo, float(ref["logits"].min())), max(hi, float(ref["logits"].max()))
        labels = ours["labels"] if "labels" in ours else ours["logits"].argmax(1)
        same += int((labels == ref["labels"]).sum())
        total += labels.size
    span = max(hi - lo, 1e-12)
    return ParityReport(str(onnx_path), info.precision, tuple(info.input_size), len(batches), max_diff, span,
                        max_diff / span, same / total)


def _compare_labels(model: nn.Module, ort_backend: object, onnx_path: Union[str, Path],
                    images: Optional[Iterable[np.ndarray]], num_random: int, seed: int) -> ParityReport:
    from ..runtime.inference import at_frame_size, predict_images
    from ..runtime.torch_backend import TorchBackend, reference_info

    info: DeployInfo = ort_backend.info  # type: ignore[attr-defined]
    # PyTorch computing what this graph computes, fed as it is (validate's reference of an artifact too)
    reference = TorchBackend(model, reference_info(info))
    size = info.output_size  # the frame size of a raw-frame graph, else the input size
    if images is not None:
        # a raw-frame graph gets the frame as a camera delivers it: both sides then take the same pixels
        inputs: List[np.ndarray] = at_frame_size([np.ascontiguousarray(im) for im in images], info)
    else:
        rng = np.random.default_rng(seed)
        inputs = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(num_random)]
    same = total = 0
    for image in inputs:
        (ours,) = predict_images(ort_backend, [image])  # type: ignore[arg-type]
        (ref,) = predict_images(reference, [image])
        same += int((ours == ref).sum())
        total += ours.size
    return ParityReport(str(onnx_path), info.precision, tuple(info.input_size), len(inputs), None, None, None,
                        same / max(total, 1), compared="labels")
