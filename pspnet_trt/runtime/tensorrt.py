"""TensorRT backend: runs an engine built by `pspnet-trt build`, checked against its manifest first.

* ``run(batch)``: numpy in and out (the common Backend call shape); copies through device buffers
  it owns, on its own CUDA stream.
* ``infer_device(input_ptr, output_ptrs, stream)``: raw CUDA device pointers and a stream handle,
  for apps whose data already lives on the GPU (C++ next to Python): no host copies at all.
* ``run_dlpack(tensor)``: any ``__dlpack__`` / torch CUDA tensor, zero-copy, via its data pointer.

Threads: an execution context is not thread-safe. Each thread that calls ``run``/``infer_device``
gets its own context (``threading.local``) sharing the one engine; the numpy path's device buffers
are per thread too.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ..deploy import DeployInfo
from ..errors import UserError
from ..trt.manifest import GpuInfo, check_manifest, read_manifest
from .backend import Backend

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)
NP_DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32, "INT64": np.int64, "UINT8": np.uint8,
             "INT8": np.int8, "BOOL": np.bool_}


class TensorIO(NamedTuple):
    """One I/O tensor as the engine reports it."""

    name: str
    is_input: bool
    shape: Tuple[int, ...]  # -1 for a dynamic dimension
    dtype: str  # TensorRT DataType name: FLOAT, HALF, UINT8, INT32, ...


def check_engine_io(io: Sequence[TensorIO], info: DeployInfo, engine: Union[str, Path]) -> None:
    """Refuse an engine whose inputs/outputs are not what its manifest says (a manifest copied beside
    another engine, or an engine built from a foreign ONNX): every later copy sizes buffers from it."""
    rebuild = f"rebuild {engine} with `pspnet-trt build` from the pspnet-trt ONNX"
    inputs = [t for t in io if t.is_input]
    outputs = {t.name: t for t in io if not t.is_input}
    h, w = info.output_size
    if [t.name for t in inputs] != [info.input_name]:
        raise UserError(f"{engine} has inputs {[t.name for t in inputs]}, its manifest says [{info.input_name!r}]: {rebuild}")
    inp = inputs[0]
    want_dtype, want_shape = ("UINT8" if info.raw_frames else "FLOAT"), info.input_shape(-1)[1:]
    if inp.dtype != want_dtype or len(inp.shape) != 4 or inp.shape[1:] != want_shape or \
            inp.shape[0] not in (-1, info.batch or -1):
        raise UserError(f"{engine} takes {inp.dtype} {inp.shape}, its manifest says {want_dtype} "
                        f"({info.batch or 'N'}, {', '.join(map(str, want_shape))}): {rebuild}")
    if sorted(outputs) != sorted(info.output_names):
        raise UserError(f"{engine} has outputs {sorted(outputs)}, its manifest says {sorted(info.output_names)}: {rebuild}")
    for name, t in outputs.items():
        want = (info.num_classes, h, w) if name == "logits" else (h, w)
        if t.shape[1:] != want or t.dtype not in NP_DTYPES:
            raise UserError(f"{engine} output {name} is {t.dtype} {t.shape}, expected (N, {', '.join(map(str, want))}) "
                            f"of a supported type: {rebuild}")


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, path: Union[str, Path], device: str = "cuda") -> None:
        from ..trt import cuda
        from ..trt.build import import_tensorrt

        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"engine {self.path} does not exist; build it with `pspnet-trt build`")
        if device == "cpu":
            raise UserError("TensorRT engines run on an NVIDIA GPU (device='cuda'); open the .onnx for the CPU")
        manifest = read_manifest(self.path)  # before touching TensorRT: the clearest error first
        import_tensorrt()  # a clear message if it is missing
        import tensorrt as trt

        name, cc = cuda.device_info()
        check_manifest(manifest, self.path, str(trt.__version__), GpuInfo(name, cc))
        self.info = manifest.info
        self.manifest = manifest
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine: trt.ICudaEngine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise UserError(f"TensorRT could not deserialize {self.path} (corrupt file?); rebuild it")
        check_engine_io(self.engine_io(), self.info, self.path)
        self._local = threading.local()
        self.outputs = list(self.info.output_names)

    def engine_io(self) -> List[TensorIO]:
        import tensorrt as trt

        io = []
        for i in range(self.engine.num_io_tensors):
            n = self.engine.get_tensor_name(i)
            dims = self.engine.get_tensor_shape(n)
            io.append(TensorIO(n, self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT,
                               tuple(dims[k] for k in range(len(dims))), str(self.engine.get_tensor_dtype(n)).split(".")[-1]))
        return io

    # -- per-thread execution state ------------------------------------------------------------
    def _context(self) -> trt.IExecutionContext:
        ctx: Optional[trt.IExecutionContext] = getattr(self._local, "context", None)
        if ctx is None:
            ctx = self.engine.create_execution_context()
            self._local.context = ctx
        return ctx

    def _dtype(self, name: str) -> Any:
        return NP_DTYPES[str(self.engine.get_tensor_dtype(name)).split(".")[-1]]

    def _buffers(self, batch: int) -> Dict[str, Any]:
        from ..trt import cuda

        bufs: Optional[Dict[str, Any]] = getattr(self._local, "buffers", None)
        if bufs is not None and bufs["batch"] == batch:
            return bufs
        if bufs is not None:
            self._free(bufs)
        h, w = self.info.output_size
        host = {self.info.input_name: np.empty(self.info.input_shape(batch), self._dtype(self.info.input_name))}
        for name in self.outputs:
            shape = (batch, self.info.num_classes, h, w) if name == "logits" else (batch, h, w)
            host[name] = np.empty(shape, self._dtype(name))
        bufs = {"batch": batch, "host": host, "device": {k: cuda.malloc(v.nbytes) for k, v in host.items()},
                "stream": cuda.stream_create()}
        self._local.buffers = bufs
        return bufs

    # -- inference -----------------------------------------------------------------------------
    def infer_device(self, input_ptr: int, output_ptrs: Union[int, Dict[str, int]], stream: int = 0,
                     batch: Optional[int] = None) -> None:
        """Enqueue inference on ``stream`` reading ``input_ptr`` and writing the outputs.

        ``input_ptr``: Nx3xHxW float32, or for a raw-frame (bgr8) engine NxHxWx3 uint8 BGR frames at the
        frame size (e.g. a camera decoder's device buffer: no host copy, no preprocessing kernel of ours).

        ``output_ptrs``: one pointer (single-output engines) or {output name: pointer}. Returns after
        enqueueing; synchronise ``stream`` before reading the outputs.
        """
        ctx = self._context()
        if isinstance(output_ptrs, int):
            if len(self.outputs) != 1:
                raise UserError(f"this engine has outputs {self.outputs}: pass a dict of pointers")
            output_ptrs = {self.outputs[0]: output_ptrs}
        n = batch or self.info.batch or 1
        if self.info.batch is None and not ctx.set_input_shape(self.info.input_name, self.info.input_shape(n)):
            raise UserError(f"batch {n} is outside the engine's optimization profile; rebuild with --max-batch {n}")
        missing = [name for name in self.outputs if name not in output_ptrs]
        if missing:
            raise UserError(f"no output pointer for {missing}: the engine writes {self.outputs}")
        for name, ptr in {self.info.input_name: input_ptr, **output_ptrs}.items():
            if not ctx.set_tensor_address(name, int(ptr)):
                raise UserError(f"TensorRT refused the address for {name!r} (unknown tensor, or misaligned pointer)")
        if not ctx.execute_async_v3(int(stream)):
            raise RuntimeError("TensorRT execute_async_v3 failed")

    def run(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        from ..trt import cuda

        batch = self.check_batch(batch)
        bufs = self._buffers(batch.shape[0])
        host, device, stream = bufs["host"], bufs["device"], bufs["stream"]
        if batch is not host[self.info.input_name]:  # filled in place via input_buffer(): no second copy
            np.copyto(host[self.info.input_name], batch)
        cuda.memcpy_htod(device[self.info.input_name], host[self.info.input_name].ctypes.data,
                         host[self.info.input_name].nbytes, stream)
        self.infer_device(device[self.info.input_name], {n: device[n] for n in self.outputs}, stream, batch.shape[0])
        for name in self.outputs:
            cuda.memcpy_dtoh(host[name].ctypes.data, device[name], host[name].nbytes, stream)
        cuda.stream_sync(stream)
        return {name: host[name].copy() for name in self.outputs}

    def run_dlpack(self, images: Any, outputs: Dict[str, Any], stream: int = 0) -> None:
        """Zero-copy on CUDA tensors: ``images`` and each of ``outputs`` expose ``data_ptr()`` (torch) or
        ``__cuda_array_interface__`` (CuPy, Numba); shapes and dtypes must be the engine's, memory
        contiguous (checked). ``stream``: the producer's stream (torch: ``torch.cuda.current_stream().cuda_stream``)."""
        n = int(images.shape[0])
        h, w = self.info.output_size
        _check_tensor(images, self.info.input_shape(n), self.info.input_dtype, "images")
        unknown = sorted(set(outputs) - set(self.outputs))
        if unknown:
            raise UserError(f"run_dlpack: no output named {unknown}; the engine writes {self.outputs}")
        for name, t in outputs.items():
            shape = (n, self.info.num_classes, h, w) if name == "logits" else (n, h, w)
            _check_tensor(t, shape, np.dtype(self._dtype(name)).name, name)
        self.infer_device(_pointer(images), {k: _pointer(v) for k, v in outputs.items()}, stream, n)

    def input_buffer(self, batch: int) -> np.ndarray:
        """This thread's host input buffer for ``batch`` images: fill it and pass it to :meth:`run`."""
        buffer: np.ndarray = self._buffers(batch)["host"][self.info.input_name]
        return buffer

    def _free(self, bufs: Dict[str, Any]) -> None:
        from ..trt import cuda

        for ptr in bufs["device"].values():
            cuda.free(ptr)
        cuda.stream_destroy(bufs["stream"])

    def close(self) -> None:
        """Free this thread's buffers and stream (other threads' are freed by their own close())."""
        bufs = getattr(self._local, "buffers", None)
        if bufs is not None:
            self._free(bufs)
            self._local.buffers = None


def _check_tensor(t: Any, shape: Tuple[int, ...], dtype: str, name: str) -> None:
    """Shape, dtype and contiguity of a torch/CuPy tensor handed to run_dlpack (a permuted view would run silently)."""
    got_shape = tuple(int(d) for d in t.shape)
    got_dtype = str(t.dtype).replace("torch.", "")
    if hasattr(t, "is_contiguous"):  # torch
        contiguous = bool(t.is_contiguous())
    else:  # CuPy / numpy-like
        contiguous = bool(getattr(getattr(t, "flags", None), "c_contiguous", True))
    if got_shape != shape or got_dtype != dtype or not contiguous:
        raise UserError(f"run_dlpack: {name} is {got_dtype} {got_shape}{'' if contiguous else ' (not contiguous)'}, "
                        f"the engine needs contiguous {dtype} {shape}")


def _pointer(tensor: Any) -> int:
    if hasattr(tensor, "data_ptr"):
        if getattr(tensor, "is_cuda", True) is False:
            raise UserError("run_dlpack needs CUDA tensors (tensor.is_cuda is False)")
        return int(tensor.data_ptr())
    if hasattr(tensor, "__cuda_array_interface__"):
        return int(tensor.__cuda_array_interface__["data"][0])
    raise UserError(f"cannot get a device pointer from {type(tensor).__name__}: pass a torch CUDA tensor, a CuPy "
                    "array or a raw pointer to infer_device")
