"""``open_backend``: the backend for any source (an ``.onnx``, an engine, a zoo name), by its artifact kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

from ..artifacts import kind_or_none
from ..errors import UserError
from .backend import Backend


def open_backend(source: Union[str, Path], device: str = "auto", checkpoint: Optional[Union[str, Path]] = None,
                 **kwargs: Any) -> Backend:
    """A backend for ``source``: an ``.onnx`` file, an engine (``.engine``/``.plan``/``.trt``) or a zoo name.
    ``device``: auto, cpu, cuda or cuda:N; ``auto`` is resolved per artifact (see :mod:`.device`)."""
    kind = kind_or_none(source)
    if kind == "onnx":
        from .ort import OrtBackend

        return OrtBackend(source, device=device, **kwargs)
    if kind == "engine":
        from .tensorrt import TensorRTBackend

        return TensorRTBackend(source, device=device, **kwargs)
    from ..zoo import ZOO

    if str(source) in ZOO:
        from .torch_backend import TorchBackend

        return TorchBackend.from_zoo(str(source), checkpoint=checkpoint, device=device, **kwargs)
    if Path(source).exists():
        raise UserError(f"{source}: unknown artifact type; expected an .onnx, an engine (.engine/.plan/.trt) "
                        "or a zoo name")
    raise UserError(f"{source}: no such file and not a zoo name (see `pspnet-trt zoo`)")
