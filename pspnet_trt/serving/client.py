"""A model on a Triton server as a :class:`~pspnet_trt.runtime.backend.Backend` (:class:`TritonBackend`), and
:class:`TritonSegmenter`, a ``Segmenter`` over one, over HTTP or gRPC:

    seg = TritonSegmenter("http://127.0.0.1:8000", "r18_os8_camvid")   # or "grpc://127.0.0.1:8001"
    labels = seg.predict(cv2.imread("street.png"))                     # uint8 HxW, the image's size

The model's config (written by ``pspnet-trt triton``) carries the artifact's DeployInfo, so the backend
describes itself as the artifact does, and ``Segmenter``'s inference door
(:func:`pspnet_trt.runtime.inference.predict_images`) feeds it exactly what it would feed the artifact
itself: for a model that serves the artifact's own tensors (``tensorrt_plan``, ``onnxruntime_onnx``,
``--python-io artifact``) the normalised or 0..255 pixel batch or the bgr8 frames its input format asks
for, in chunks of its batch rule (a static batch padded; a dynamic one up to the config's
``max_batch_size``). The Python model's ``frames`` interface is a bgr8 backend: frames at the artifact's
frame size for a raw-frame artifact, else one frame of any size per call (the model prepares it, with the
client's resize mode: each request carries it as the request parameter ``resize``).

Threads: the HTTP client of tritonclient must not be shared across threads, so calls on one backend are
serialised by a lock; open one TritonSegmenter per thread for concurrent requests.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from ..deploy import METADATA_KEY, DeployInfo
from ..deps import require
from ..errors import UserError
from ..runtime.backend import Backend
from ..runtime.segmenter import Segmenter

NP_DTYPES = {"UINT8": np.uint8, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
             "FP32": np.float32, "BOOL": np.bool_}


def parse_url(url: str) -> Tuple[str, str]:
    """``http://h:p`` / ``grpc://h:p`` / ``h:p`` (HTTP) -> (protocol, "h:p")."""
    for scheme in ("http", "grpc"):
        if url.startswith(f"{scheme}://"):
            return scheme, url[len(scheme) + 3:].rstrip("/")
    if "://" in url:
        raise UserError(f"{url}: the Triton URL must start with http:// or grpc:// (or be host:port for HTTP)")
    return "http", url.rstrip("/")


class TritonBackend(Backend):
    """One model on a Triton server: ``info`` is the DeployInfo its config carries (for the Python model's
    ``frames`` interface, that of a bgr8 artifact: uint8 frames in, labels at the frame size out), ``max_batch``
    the config's ``max_batch_size`` (without batching: the static batch, or 1), and ``run`` one request."""

    name = "triton"

    def __init__(self, url: str, model: str, version: str = "", timeout_s: float = 60.0) -> None:
        self.protocol, self.address = parse_url(url)
        self.model, self.version, self.timeout_s = model, version, timeout_s
        self._tc = require(f"tritonclient.{self.protocol}", "talking to a Triton server")
        if self.protocol == "http":
            self.client = self._tc.InferenceServerClient(self.address, connection_timeout=timeout_s,
                                                         network_timeout=timeout_s)
        else:
            self.client = self._tc.InferenceServerClient(self.address)
        self._lock = threading.Lock()
        # frames of any size: how the model brings each to the artifact's input (request parameter "resize";
        # None: the model's own default), set by TritonSegmenter
        self.resize: Optional[str] = None
        try:
            self._configure(url, self._config())
        except BaseException:
            self.client.close()
            raise

    def _configure(self, url: str, config: Dict[str, Any]) -> None:
        params = {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}
        if METADATA_KEY not in params:
            raise UserError(f"model {self.model!r} on {url} carries no pspnet-trt metadata (config parameter "
                            f"{METADATA_KEY!r}); write its repository with `pspnet-trt triton`")
        artifact = DeployInfo.from_json(params[METADATA_KEY])
        self.max_batch_size = int(config.get("max_batch_size", 0))
        batching = self.max_batch_size > 0
        inp = config["input"][0]
        self.input_name = str(inp["name"])
        self.input_type = str(inp.get("data_type", "TYPE_FP32")).replace("TYPE_", "")
        dims = tuple(int(d) for d in inp["dims"])  # gRPC's JSON spells int64 as strings
        self.output_names = [str(o["name"]) for o in config["output"]]
        self.frames = config.get("backend") == "python" and params.get("io", "frames") == "frames"
        if self.frames:  # model.py runs the artifact on each frame: a bgr8 backend, labels at the frame size
            self.any_frame_size = not artifact.raw_frames
            self.info = artifact.with_(input_format="bgr8", frame_size=artifact.frame_size or artifact.input_size,
                                       output="labels", batch=None if batching else 1)
        else:  # the artifact's own tensors
            self.any_frame_size = False
            self.info = artifact
        want = self.info.input_shape(-1 if self.info.batch is None else self.info.batch)
        if self.any_frame_size:
            want = (want[0], -1, -1, 3)
        if (want[1:] if batching else want) != dims or self.input_type not in NP_DTYPES:
            raise UserError(f"model {self.model!r}: input {self.input_name} {self.input_type} {list(dims)} is not the "
                            f"{self.info.input_format} input {list(want)} its pspnet-trt metadata describes; write "
                            "its repository again with `pspnet-trt triton`")
        self.max_batch = self.max_batch_size if batching else (self.info.batch or 1)

    def _config(self) -> Dict[str, Any]:
        if self.protocol == "http":
            return dict(self.client.get_model_config(self.model, self.version))
        return dict(self.client.get_model_config(self.model, self.version, as_json=True)["config"])

    def run(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        """One request: the model's input (see the class docstring) -> its outputs by name (logits as float32)."""
        if self.any_frame_size:
            if batch.ndim != 4 or batch.shape[3] != 3 or batch.dtype != np.uint8:
                raise ValueError(f"{self.name}: expected uint8 BGR frames of shape NxHxWx3, got {batch.dtype} "
                                 f"{batch.shape}")
            batch = np.ascontiguousarray(batch)
        else:
            batch = self.check_batch(batch)
        if self.max_batch is not None and len(batch) > self.max_batch:
            raise ValueError(f"{self.name}: model {self.model!r} takes at most {self.max_batch} images a request, "
                             f"got {len(batch)}")
        parameters = {"resize": self.resize} if self.any_frame_size and self.resize else None
        out = self.infer({self.input_name: batch.astype(NP_DTYPES[self.input_type], copy=False)},
                         parameters=parameters)
        if "logits" in out:
            out["logits"] = out["logits"].astype(np.float32, copy=False)
        return out

    def infer(self, inputs: Dict[str, np.ndarray], outputs: Optional[Sequence[str]] = None,
              parameters: Optional[Dict[str, str]] = None) -> Dict[str, np.ndarray]:
        """One request (arrays with their batch dimension, request ``parameters``); the outputs by name. Triton's
        errors propagate."""
        tc = self._tc
        reqs = []
        for name, array in inputs.items():
            dtype = next((k for k, v in NP_DTYPES.items() if np.dtype(v) == array.dtype), None)
            if dtype is None:
                raise UserError(f"input {name}: dtype {array.dtype} has no Triton type")
            r = tc.InferInput(name, list(array.shape), dtype)
            r.set_data_from_numpy(array)
            reqs.append(r)
        names = list(outputs or self.output_names)
        if self.protocol == "http":
            wanted = [tc.InferRequestedOutput(n, binary_data=True) for n in names]
        else:
            wanted = [tc.InferRequestedOutput(n) for n in names]
        with self._lock:
            result = self.client.infer(self.model, reqs, model_version=self.version, outputs=wanted,
                                       parameters=parameters)
        out = {}
        for n in names:
            try:
                out[n] = result.as_numpy(n)
            except ValueError as e:  # e.g. "cannot reshape array of size 0": the data did not arrive
                raise RuntimeError(
                    f"{self.model}: output {n!r} arrived without its data ({e}); a Python-backend model that "
                    "builds outputs with pb_utils.Tensor under numpy 2 does this (see pspnet_trt/serving/"
                    "triton_model.py)") from None
            if out[n] is None:
                raise RuntimeError(f"{self.model}: the response has no output {n!r}")
        return out

    def close(self) -> None:
        with self._lock:
            self.client.close()

    def __repr__(self) -> str:
        return f"TritonBackend({self.protocol}://{self.address}, {self.model})"


class TritonSegmenter(Segmenter):
    """``Segmenter`` over a model on a Triton server (:class:`TritonBackend`): ``predict``, ``predict_batch``,
    ``overlay``, the artifact's classes and palette; ``close()`` or ``with`` closes the connection. ``resize``
    (``stretch`` / ``keep_ratio``) holds on every interface: on the ``frames`` interface of a normalized or pixels
    artifact, where the model prepares each frame, every request carries it to the model."""

    def __init__(self, url: str, model: str, version: str = "", timeout_s: float = 60.0,
                 resize: Optional[str] = None) -> None:
        self.triton = TritonBackend(url, model, version, timeout_s)
        try:
            super().__init__(self.triton, resize=resize)
            if self.triton.any_frame_size:  # the model resizes each frame: tell it how (else it would stretch)
                self.triton.resize = self.resize
        except BaseException:
            self.triton.close()
            raise

    @property
    def frames(self) -> bool:
        """True for the Python model's ``frames`` interface; False where the client prepares the artifact's input."""
        return self.triton.frames

    def __repr__(self) -> str:
        b, i = self.triton, self.info
        served = "frames" if b.frames else f"{i.input_format} input"
        return (f"TritonSegmenter({b.protocol}://{b.address}, {b.model}, {i.model}, {served}, "
                f"{i.num_classes} classes, resize={self.resize})")
