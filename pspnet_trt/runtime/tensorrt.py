"""TensorRT backend: runs an engine built by `pspnet-trt build`, checked against its manifest first.

* ``run(batch)``: numpy in and out (the common Backend call shape); copies through device buffers
  it owns, on its own CUDA stream.
* ``infer_device(input_ptr, output_ptrs, stream, batch)``: raw CUDA device pointers and a stream handle,
  for apps whose data already lives on the GPU (C++ next to Python): no host copies at all.
* ``run_dlpack(tensor)``: any ``__dlpack__`` / torch CUDA tensor, zero-copy, via its data pointer.

Batch: a static-batch engine runs exactly its batch, a dynamic one 1..``--max-batch`` (see
:func:`engine_batch`); anything else is refused before TensorRT reads or writes a byte.
Device: ``cuda:N`` is the GPU the manifest is checked against, the engine is deserialized on, and
every call makes current while it works (CUDA's current device is per thread); each gives the calling
thread's own current device back afterwards. Labels: ``run`` returns uint8;
``infer_device``/``run_dlpack`` write the engine's own label type (int32 on TensorRT 8.5/8.6).

Threads: an execution context is not thread-safe. Each thread that calls ``run``/``infer_device``
gets its own context (``threading.local``) sharing the one engine; the numpy path's device buffers
are per thread too.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ..artifacts import GpuInfo, check_engine_file, check_manifest, read_manifest
from ..deploy import DeployInfo
from ..deps import import_tensorrt
from ..errors import UserError
from .backend import Backend, as_uint8_labels
from .device import resolve_device

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


def engine_batch(requested: Optional[int], static: Optional[int], max_batch: Optional[int]) -> int:
    """The batch to run: a static-batch engine runs exactly ``static`` images (also when ``requested`` is None),
    a dynamic one ``requested`` (default 1) within 1..``max_batch`` (its optimization profile; None = unknown,
    TensorRT's profile check decides). Anything else is refused: the engine would read and write past the
    caller's buffers."""
    if static is not None:
        if requested is not None and requested != static:
            raise UserError(f"this engine was built for a static batch of {static}, got {requested}: pass exactly "
                            f"{static} images (pad the last chunk, as Segmenter does), or export with "
                            "--dynamic-batch and build with --max-batch")
        return static
    n = 1 if requested is None else int(requested)
    if n < 1 or (max_batch is not None and n > max_batch):
        raise UserError(f"batch {n} is outside this engine's range 1..{max_batch or 'max'}: "
                        f"{'rebuild with --max-batch ' + str(n) if n > 1 else 'pass at least one image'}")
    return n


@dataclass
class DeviceBuffers:
    """The numpy path's host and device buffers of one thread, at one batch size."""

    batch: int
    host: Dict[str, np.ndarray]
    device: Dict[str, int]  # CUDA device pointers by tensor name
    stream: int  # CUDA stream handle


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, path: Union[str, Path], device: str = "auto") -> None:
        """``device``: auto or cuda (GPU 0), or cuda:N; cpu is refused (open the .onnx for the CPU)."""
        from . import cuda

        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"engine {self.path} does not exist; build it with `pspnet-trt build`")
        dev = resolve_device(device, lambda: True)
        if not dev.is_cuda:
            raise UserError("TensorRT engines run on an NVIDIA GPU (device='cuda'); open the .onnx for the CPU")
        self.device_index = dev.index
        manifest = read_manifest(self.path)  # before touching TensorRT: the clearest errors first
        data = self.path.read_bytes()
        check_engine_file(manifest, data, self.path)
        import_tensorrt()  # a clear message if it is missing
        import tensorrt as trt

        # the manifest is checked against, and the engine lives on, this GPU; the caller's thread keeps its own
        with cuda.on_device(self.device_index, checked=True):
            name, cc = cuda.device_info(self.device_index)
            check_manifest(manifest, self.path, str(trt.__version__), GpuInfo(name, cc))
            self.info = manifest.info
            self.manifest = manifest
            max_batch = manifest.build_flags.get("max_batch")
            self.max_batch: Optional[int] = None if self.info.batch is not None or max_batch is None else int(max_batch)
            runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            self.engine: trt.ICudaEngine = runtime.deserialize_cuda_engine(data)
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

    def device_buffers(self, batch: Optional[int] = None) -> DeviceBuffers:
        """This thread's host and device buffers for ``batch`` images (default: the engine's batch, or 1), made
        on first use and kept until the batch changes or :meth:`close`. ``run`` copies through them;
        benchmarks time ``infer_device`` on them."""
        from . import cuda

        batch = engine_batch(batch, self.info.batch, self.max_batch)
        bufs: Optional[DeviceBuffers] = getattr(self._local, "buffers", None)
        if bufs is not None and bufs.batch == batch:
            return bufs
        with cuda.on_device(self.device_index):  # the buffers and the stream live on this engine's GPU
            if bufs is not None:
                self._free(bufs)
            h, w = self.info.output_size
            host = {self.info.input_name: np.empty(self.info.input_shape(batch), self._dtype(self.info.input_name))}
            for name in self.outputs:
                shape = (batch, self.info.num_classes, h, w) if name == "logits" else (batch, h, w)
                host[name] = np.empty(shape, self._dtype(name))
            bufs = DeviceBuffers(batch, host, {k: cuda.malloc(v.nbytes) for k, v in host.items()},
                                 cuda.stream_create())
        self._local.buffers = bufs
        return bufs

    # -- inference -----------------------------------------------------------------------------
    def infer_device(self, input_ptr: int, output_ptrs: Union[int, Dict[str, int]], stream: int = 0,
                     batch: Optional[int] = None) -> None:
        """Enqueue inference on ``stream`` reading ``input_ptr`` and writing the outputs.

        ``input_ptr``: Nx3xHxW float32, or for a raw-frame (bgr8) engine NxHxWx3 uint8 BGR frames at the
        frame size (e.g. a camera decoder's device buffer: no host copy, no preprocessing kernel of ours).

        ``output_ptrs``: one pointer (single-output engines) or {output name: pointer}. ``batch``: N; a
        static-batch engine takes only its own (the default), a dynamic one 1..max batch (default 1).
        Makes this engine's GPU current on the calling thread while it enqueues, then gives the thread its
        own current device back. Returns after enqueueing; synchronise ``stream`` before reading the outputs.
        """
        from . import cuda

        n = engine_batch(batch, self.info.batch, self.max_batch)
        if isinstance(output_ptrs, int):
            if len(self.outputs) != 1:
                raise UserError(f"this engine has outputs {self.outputs}: pass a dict of pointers")
            output_ptrs = {self.outputs[0]: output_ptrs}
        missing = [name for name in self.outputs if name not in output_ptrs]
        if missing:
            raise UserError(f"no output pointer for {missing}: the engine writes {self.outputs}")
        with cuda.on_device(self.device_index):
            ctx = self._context()
            if self.info.batch is None and not ctx.set_input_shape(self.info.input_name, self.info.input_shape(n)):
                raise UserError(f"batch {n} is outside the engine's optimization profile; rebuild with --max-batch {n}")
            for name, ptr in {self.info.input_name: input_ptr, **output_ptrs}.items():
                if not ctx.set_tensor_address(name, int(ptr)):
                    raise UserError(f"TensorRT refused the address for {name!r} (unknown tensor, or misaligned pointer)")
            if not ctx.execute_async_v3(int(stream)):
                raise RuntimeError("TensorRT execute_async_v3 failed")

    def run(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        from . import cuda

        batch = self.check_batch(batch)
        bufs = self.device_buffers(batch.shape[0])
        host, device, stream = bufs.host, bufs.device, bufs.stream
        if batch is not host[self.info.input_name]:  # filled in place via input_buffer(): no second copy
            np.copyto(host[self.info.input_name], batch)
        with cuda.on_device(self.device_index):  # copies and inference on this engine's GPU, then the caller's
            cuda.memcpy_htod(device[self.info.input_name], host[self.info.input_name].ctypes.data,
                             host[self.info.input_name].nbytes, stream)
            self.infer_device(device[self.info.input_name], {n: device[n] for n in self.outputs}, stream,
                              batch.shape[0])
            for name in self.outputs:
                cuda.memcpy_dtoh(host[name].ctypes.data, device[name], host[name].nbytes, stream)
            cuda.stream_sync(stream)
        out = {name: host[name].copy() for name in self.outputs}
        if "labels" in out:  # uint8 from every backend (TensorRT 8.x engines write int32)
            out["labels"] = as_uint8_labels(out["labels"])
        return out

    def run_dlpack(self, images: Any, outputs: Dict[str, Any], stream: int = 0) -> None:
        """Zero-copy on CUDA tensors: ``images`` and each of ``outputs`` expose ``data_ptr()`` (torch) or
        ``__cuda_array_interface__`` (CuPy, Numba); shapes and dtypes must be the engine's, memory
        contiguous (checked). ``stream``: the producer's stream (torch: ``torch.cuda.current_stream().cuda_stream``)."""
        n = engine_batch(int(images.shape[0]), self.info.batch, self.max_batch)
        h, w = self.info.output_size
        check_dlpack_tensor(images, self.info.input_shape(n), self.info.input_dtype, "images")
        unknown = sorted(set(outputs) - set(self.outputs))
        if unknown:
            raise UserError(f"run_dlpack: no output named {unknown}; the engine writes {self.outputs}")
        for name, t in outputs.items():
            shape = (n, self.info.num_classes, h, w) if name == "logits" else (n, h, w)
            check_dlpack_tensor(t, shape, np.dtype(self._dtype(name)).name, name)
        self.infer_device(_pointer(images), {k: _pointer(v) for k, v in outputs.items()}, stream, n)

    def input_buffer(self, batch: int) -> np.ndarray:
        """This thread's host input buffer for ``batch`` images: fill it and pass it to :meth:`run`."""
        buffer: np.ndarray = self.device_buffers(batch).host[self.info.input_name]
        return buffer

    def _free(self, bufs: DeviceBuffers) -> None:
        from . import cuda

        with cuda.on_device(self.device_index):
            for ptr in bufs.device.values():
                cuda.free(ptr)
            cuda.stream_destroy(bufs.stream)

    def close(self) -> None:
        """Free this thread's buffers and stream (other threads' are freed by their own close())."""
        bufs = getattr(self._local, "buffers", None)
        if bufs is not None:
            self._free(bufs)
            self._local.buffers = None


def check_dlpack_tensor(t: Any, shape: Tuple[int, ...], dtype: str, name: str) -> None:
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
