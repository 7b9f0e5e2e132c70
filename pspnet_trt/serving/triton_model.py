"""Triton Python-backend model (copied to ``REPO/NAME/1/model.py`` by ``pspnet-trt triton --backend python``).

Runs the artifact beside it (config parameter ``artifact``) through :class:`pspnet_trt.Segmenter`:
``frames`` UINT8 [N, H, W, 3] BGR in, ``labels`` UINT8 [N, H, W] out, one label map per frame at the
frame's size. A request's parameter ``resize`` (``stretch`` / ``keep_ratio``, sent by ``TritonSegmenter``) says how
its frames reach the artifact's input; without it, the Segmenter's default. Requests that the dynamic batcher
groups are run as one batch per resize mode.

Tensors cross the stub by DLPack, not by ``as_numpy()`` / ``Tensor(name, array)``: the stub of the
Python backend bundled with nvidia-pytriton (Triton 2.51) is built against numpy 1, and under numpy 2
both of those read the array's item size from the old struct layout. Measured here with numpy 2.4.6:
``as_numpy()`` returned zeros instead of the request's data and every output arrived with 0 bytes
(uint8, int32, int64 and float32 alike). DLPack passes pointer, dtype and shape without numpy's C
structs and gives the right bytes under numpy 1.22+ and 2.x. (The stub marks a consumed capsule
``used_dlpack`` where numpy expects ``used_dltensor``; :func:`to_triton` renames it, else numpy's
capsule destructor prints a traceback for every output.)

This file is imported only inside the Triton stub (``triton_python_backend_utils`` exists only there).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

log = logging.getLogger("pspnet_trt.serving.triton_model")

_set_name = ctypes.pythonapi.PyCapsule_SetName
_set_name.argtypes = (ctypes.py_object, ctypes.c_char_p)
_get_name = ctypes.pythonapi.PyCapsule_GetName
_get_name.argtypes = (ctypes.py_object,)
_get_name.restype = ctypes.c_char_p
_USED = ctypes.c_char_p(b"used_dltensor")  # kept alive for the capsules' lifetime (PyCapsule_SetName keeps the pointer)


def to_numpy(tensor: Any) -> np.ndarray:
    """A request's input as numpy, through DLPack (see the module docstring)."""
    return np.from_dlpack(tensor)


def to_triton(name: str, array: np.ndarray) -> Any:
    """An output tensor from numpy, through DLPack (see the module docstring)."""
    capsule = np.ascontiguousarray(array).__dlpack__()
    tensor = pb_utils.Tensor.from_dlpack(name, capsule)
    if _get_name(capsule) == b"used_dlpack":  # consumed by the stub, which now owns it: numpy must not free it
        _set_name(capsule, _USED)
    return tensor


def honour_pythonpath() -> None:
    """The stub's embedded Python ignores PYTHONPATH; apply it (``pspnet-trt serve`` puts the pspnet_trt that
    started the server first there, so the model runs the same code as the client that wrote it)."""
    for entry in reversed([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]):
        if entry not in sys.path:
            sys.path.insert(0, entry)


class TritonPythonModel:
    def initialize(self, args: Dict[str, Any]) -> None:
        honour_pythonpath()
        from pspnet_trt.runtime import Segmenter

        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        version_dir = Path(args["model_repository"]) / args["model_version"]
        artifact = version_dir / params["artifact"]
        device = params.get("device", "cpu")
        if device.startswith("cuda") and args.get("model_instance_kind") == "GPU":
            device = f"cuda:{args['model_instance_device_id']}"
        self.segmenter = Segmenter.open(artifact, device=device)
        self.name = config["name"]
        self.io = params.get("io", "frames")
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]
        pb_utils.Logger.log_info(f"{self.name}: {self.segmenter!r} (numpy {np.__version__})")

    def execute(self, requests: List[Any]) -> List[Any]:
        if self.io == "artifact":
            return self.execute_artifact(requests)
        batches = [list(to_numpy(pb_utils.get_input_tensor_by_name(r, "frames"))) for r in requests]
        labels: List[List[np.ndarray]] = [[] for _ in requests]
        try:
            modes = [json.loads(r.parameters() or "{}").get("resize") or self.segmenter.resize for r in requests]
            for mode in sorted(set(modes)):  # one batch per resize mode, each request's labels back in order
                mine = [i for i, m in enumerate(modes) if m == mode]
                out = self.segmenter.predict_batch([f for i in mine for f in batches[i]], resize=mode)
                for i in mine:
                    labels[i], out = out[:len(batches[i])], out[len(batches[i]):]
        except Exception as e:  # one bad frame fails the requests of this execution, not the server
            error = pb_utils.TritonError(f"{self.name}: {type(e).__name__}: {e}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        return [pb_utils.InferenceResponse(output_tensors=[to_triton("labels", np.stack(m).astype(np.uint8,
                                                                                              copy=False))])
                for m in labels]

    def execute_artifact(self, requests: List[Any]) -> List[Any]:
        """The artifact's own tensors (``backend.run``), as a tensorrt_plan / onnxruntime_onnx model serves it."""
        batches = [to_numpy(pb_utils.get_input_tensor_by_name(r, self.inputs[0])) for r in requests]
        try:
            out = self.segmenter.backend.run(np.concatenate(batches) if len(batches) > 1 else batches[0])
        except Exception as e:
            error = pb_utils.TritonError(f"{self.name}: {type(e).__name__}: {e}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        responses, start = [], 0
        for b in batches:
            tensors = [to_triton(n, out[n][start:start + len(b)]) for n in self.outputs]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += len(b)
        return responses

    def finalize(self) -> None:
        self.segmenter.close()
