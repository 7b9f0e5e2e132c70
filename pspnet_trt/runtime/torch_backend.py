"""PyTorch backend: the reference every exported artifact is compared against.

It takes the batch its ``info`` describes, as the artifact of that info does, and computes what that artifact's
graph computes, with the trained model and host operations (:meth:`TorchBackend.reference_of` makes the reference
of any artifact):

* input: ``normalized`` as given; ``pixels`` (0..255 in the model's channel order) -> ``(x - mean) / std``;
  ``bgr8`` frames -> ``cv2.resize`` INTER_LINEAR to the input size and normalised on the host
  (:func:`pspnet_trt.preprocess.make_batch`: what the graph's in-graph resize reproduces bit for bit);
* head: the class scores bilinearly (align_corners=False) to the input size, softmax for a ``pixels`` graph (its
  scores are probabilities), argmax for labels; a ``bgr8`` graph's labels at the frame size: with
  ``frame_upsample="logits"`` the scores go straight to the frame size once, then argmax; with ``"labels"`` the
  argmax at the input size goes to the frame size by nearest neighbour (``cv2.INTER_NEAREST``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple, Union

import numpy as np

from ..deploy import DeployInfo
from ..deps import require
from ..errors import UserError
from .backend import Backend
from .device import resolve_device

if TYPE_CHECKING:
    from torch import nn


class TorchBackend(Backend):
    name = "pytorch"

    def __init__(self, model: nn.Module, info: DeployInfo, device: str = "auto", threads: Optional[int] = None) -> None:
        """``device``: auto (CUDA if torch sees a GPU), cpu, cuda or cuda:N. ``threads``: CPU threads for PyTorch.
        Note: torch's setting is process-wide, unlike ONNX Runtime's."""
        self.torch = require("torch", "the PyTorch backend")
        if threads:
            self.torch.set_num_threads(threads)
        dev = resolve_device(device, self.torch.cuda.is_available)
        count = self.torch.cuda.device_count() if dev.is_cuda else 0
        if dev.is_cuda and dev.index >= count:
            raise UserError(f"device {dev} asked for, but this torch sees {count} CUDA GPU(s)"
                            f"{'' if count else ' (a CPU-only torch build, or no driver)'}: use device='auto' or 'cpu'")
        self.device = self.torch.device(str(dev))
        self.model = model.eval().to(self.device)
        self.info = info

    @classmethod
    def from_zoo(cls, name: str, checkpoint: Optional[Union[str, Path]] = None, device: str = "cpu",
                 input_size: Optional[Tuple[int, int]] = None, output: str = "logits", batch: Optional[int] = None,
                 num_classes: Optional[int] = None, threads: Optional[int] = None, *, random_weights: bool = False,
                 seed: int = 0) -> TorchBackend:
        """Zoo model ``name`` from :func:`pspnet_trt.models.create_model`: ``checkpoint``, else the shipped one,
        else the published one (downloaded once); random weights (``seed``) only with ``random_weights=True``."""
        require("torch", "the PyTorch backend")
        from ..models import create_model
        from ..zoo import get_spec

        spec = get_spec(name)
        model = create_model(name, checkpoint, random_weights=random_weights, seed=seed, num_classes=num_classes)
        info = DeployInfo.from_spec(spec, input_size=input_size, num_classes=num_classes, classes=model.weights.classes,
                                    output=output, batch=batch, checkpoint_sha256=model.weights.sha256)
        return cls(model, info, device=device, threads=threads)

    def reference_of(self, info: DeployInfo) -> TorchBackend:
        """This model as the reference of an artifact described by ``info``: it takes that artifact's input and
        computes what its graph computes (see the module docstring), in FP32, any batch size. The weights are
        shared, not copied."""
        return TorchBackend(self.model, reference_info(info, self.info), device=str(self.device))

    def network_input(self, batch: np.ndarray) -> np.ndarray:
        """The normalised Nx3xHxW float32 network input of a batch in this backend's input format."""
        info = self.info
        if info.input_format == "bgr8":
            from ..preprocess import make_batch

            return make_batch(list(batch), info.input_size, info.normalization)
        if info.input_format == "pixels":
            norm = info.normalization
            mean = np.asarray(norm.mean, np.float32).reshape(1, 3, 1, 1)
            std = np.asarray(norm.std, np.float32).reshape(1, 3, 1, 1)
            return (batch - mean) / std
        return batch

    def forward(self, x: Any) -> Dict[str, Any]:
        """The normalised network input (torch) in, the outputs of this backend's graph kind out (torch)."""
        from ..models import upsample_logits

        info, torch = self.info, self.torch
        scores = self.model(x)
        if info.raw_frames:
            assert info.frame_size is not None
            if info.frame_upsample == "logits":  # the scores straight to the frame size, then argmax
                return {"labels": upsample_logits(scores, info.frame_size).argmax(1).to(torch.uint8)}
            from ..preprocess import resize_labels

            labels = upsample_logits(scores, tuple(x.shape[-2:])).argmax(1).to(torch.uint8).cpu().numpy()
            return {"labels": torch.from_numpy(np.stack([resize_labels(m, info.frame_size) for m in labels]))}
        logits = upsample_logits(scores, tuple(x.shape[-2:]))
        if info.input_format == "pixels":  # the graph outputs probabilities (DeepStream's parser)
            logits = torch.softmax(logits, dim=1)
        out = {}
        if info.output in ("logits", "both"):
            out["logits"] = logits
        if info.output in ("labels", "both"):
            out["labels"] = logits.argmax(1).to(torch.uint8)
        return out

    def run(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        x = self.network_input(self.check_batch(batch))
        with self.torch.inference_mode():
            out = self.forward(self.torch.from_numpy(np.ascontiguousarray(x)).to(self.device))
        return {k: v.cpu().numpy() for k, v in out.items()}


def reference_info(info: DeployInfo, base: Optional[DeployInfo] = None) -> DeployInfo:
    """The DeployInfo of the PyTorch reference of an artifact described by ``info``: the same input size and
    format, frame size, frame upsample and outputs (so it is fed and read back as the artifact is), FP32, any
    batch size; the rest (model, classes, checkpoint) from ``base``, the reference's own (default: ``info``)."""
    return (base or info).with_(input_size=info.input_size, input_format=info.input_format,
                                frame_size=info.frame_size, frame_upsample=info.frame_upsample, output=info.output,
                                precision="fp32", batch=None)
