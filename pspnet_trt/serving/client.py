"""``TritonSegmenter``: ``Segmenter.predict`` against a model on a Triton server, over HTTP or gRPC.

    seg = TritonSegmenter("http://127.0.0.1:8000", "r18_os8_camvid")   # or "grpc://127.0.0.1:8001"
    labels = seg.predict(cv2.imread("street.png"))                     # uint8 HxW, the image's size

The model's config (written by ``pspnet-trt triton``) carries the artifact's DeployInfo, so the client
knows the classes, palette and, for a model that takes normalised tensors (an ONNX or engine served
as ``onnxruntime_onnx`` / ``tensorrt_plan``), how to preprocess and post-process exactly as
``Segmenter`` does. A model that takes UINT8 frames (the Python-backend model, or a raw-frame
artifact) gets the frame as it is; a frame of another size than a fixed-size model's is resized on
the client first (bilinear) and its labels are resized back (nearest).

Threads: the HTTP client of tritonclient must not be shared across threads, so calls on one
TritonSegmenter are serialised by a lock; open one per thread for concurrent requests.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..deploy import METADATA_KEY, DeployInfo
from ..deps import require
from ..errors import UserError
from ..preprocess import check_image, logits_to_labels, make_batch, resize_image, resize_labels
from ..runtime.segmenter import SegmenterInterface

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


class TritonSegmenter(SegmenterInterface):
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
        config = self._config()
        params = {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}
        if METADATA_KEY not in params:
            raise UserError(f"model {model!r} on {url} carries no pspnet-trt metadata (config parameter "
                            f"{METADATA_KEY!r}); write its repository with `pspnet-trt triton`")
        self._info = DeployInfo.from_json(params[METADATA_KEY])
        self.max_batch = int(config.get("max_batch_size", 0))
        inp = config["input"][0]
        self.input_name = str(inp["name"])
        self.input_type = str(inp["data_type"]).replace("TYPE_", "")
        dims = [int(d) for d in inp["dims"]]  # gRPC's JSON spells int64 as strings
        self.input_dims = dims if self.max_batch else dims[1:]  # per item, batch dim excluded
        self.static_batch = 0 if self.max_batch else dims[0]
        self.output_names = [str(o["name"]) for o in config["output"]]
        self.frames = self.input_type == "UINT8" and self.input_dims[-1] == 3  # HxWx3 frames in
        if not self.frames and self.input_dims != [3, *self.info.input_size]:
            raise UserError(f"model {model!r}: input {self.input_name} {self.input_type} {dims} is neither UINT8 "
                            f"frames (HxWx3) nor the normalised 3x{self.info.input_size[0]}x{self.info.input_size[1]}"
                            " its metadata describes")

    def _config(self) -> Dict[str, Any]:
        if self.protocol == "http":
            return dict(self.client.get_model_config(self.model, self.version))
        return dict(self.client.get_model_config(self.model, self.version, as_json=True)["config"])

    # -- Segmenter's interface (class_names, palette, predict, overlay, ...: SegmenterInterface) ------
    @property
    def info(self) -> DeployInfo:
        return self._info

    def predict_batch(self, images: Sequence[np.ndarray]) -> List[np.ndarray]:
        images = [check_image(im, f"image {i}") for i, im in enumerate(images)]
        return [labels for im in images for labels in self._one(im)]

    # -- requests -------------------------------------------------------------------------------
    def _one(self, image: np.ndarray) -> List[np.ndarray]:
        size = image.shape[:2]
        if self.frames:
            h, w = self.input_dims[0], self.input_dims[1]
            frame = image if -1 in (h, w) else resize_image(image, (h, w))
            out = self.infer({self.input_name: self._batched(frame[None])})
            return [resize_labels(out["labels"][0], size)]
        batch = self._batched(make_batch([image], self.info.input_size, self.info.normalization))
        out = self.infer({self.input_name: batch.astype(NP_DTYPES[self.input_type], copy=False)})
        if "logits" in out:
            return [logits_to_labels(out["logits"][0].astype(np.float32), size)]
        return [resize_labels(out["labels"][0].astype(np.uint8, copy=False), size)]

    def _batched(self, batch: np.ndarray) -> np.ndarray:
        if self.static_batch > len(batch):  # a model without batching but a static batch > 1: pad
            batch = np.concatenate([batch, np.repeat(batch[-1:], self.static_batch - len(batch), axis=0)])
        return np.ascontiguousarray(batch)

    def infer(self, inputs: Dict[str, np.ndarray], outputs: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
        """One request (arrays with their batch dimension); the outputs by name. Triton's errors propagate."""
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
            result = self.client.infer(self.model, reqs, model_version=self.version, outputs=wanted)
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

    def __enter__(self) -> TritonSegmenter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        i = self.info
        return (f"TritonSegmenter({self.protocol}://{self.address}, {self.model}, {i.model}, "
                f"{'frames' if self.frames else 'normalised'} input, {i.num_classes} classes)")

