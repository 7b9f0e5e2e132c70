"""PyTorch backend: the reference every exported artifact is compared against.

It takes the same preprocessed batch as the other backends and applies the same deploy head
(bilinear upsample to the input size, argmax) as the exported graph.
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

    def forward(self, x: Any) -> Dict[str, Any]:
        """Torch tensors in, torch tensors out (what the exported graph computes)."""
        from ..models import upsample_logits

        logits = upsample_logits(self.model(x), tuple(x.shape[-2:]))
        out = {}
        if self.info.output in ("logits", "both"):
            out["logits"] = logits
        if self.info.output in ("labels", "both"):
            out["labels"] = logits.argmax(1).to(self.torch.uint8)
        return out

    def run(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        batch = self.check_batch(batch)
        with self.torch.inference_mode():
            out = self.forward(self.torch.from_numpy(batch).to(self.device))
        return {k: v.cpu().numpy() for k, v in out.items()}
