"""The few CUDA runtime calls we need, through NVIDIA's ``cuda-python`` (``cuda.bindings.runtime``).

Why cuda-python: NVIDIA publishes wheels for x86_64 and aarch64 (Jetson) so nothing is compiled
on the device (pycuda builds from source against the local CUDA and often fails on JetPack), it is
NVIDIA's supported binding going forward, and it exposes streams and device pointers as plain
integers, which is what apps next to C++ pass around. Polygraphy's CUDA wrapper would pull all of
Polygraphy for ten functions.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Optional, Tuple

from ..deps import require
from ..errors import UserError


def runtime() -> Any:
    """``cuda.bindings.runtime`` (cuda-python >= 12.6), else the older ``cuda.cudart``."""
    try:
        from cuda.bindings import runtime as cudart

        return cudart
    except ImportError:
        return require("cuda.cudart", "CUDA memory and streams (TensorRT backend)")


def check(result: Tuple[Any, ...]) -> Any:
    """cuda-python returns (error, value...); raise on error, return the value(s)."""
    err, *values = result
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err}")
    return values[0] if len(values) == 1 else tuple(values)


def device_count() -> int:
    """Visible CUDA devices, or a UserError without a GPU."""
    err, count = runtime().cudaGetDeviceCount()
    if int(err) != 0 or count == 0:
        raise UserError("no CUDA GPU is visible (cudaGetDeviceCount failed or returned 0): TensorRT engines need an "
                        "NVIDIA GPU with its driver; use the ONNX Runtime backend (.onnx) on this machine")
    return int(count)


def check_index(index: int) -> None:
    """A UserError unless GPU ``index`` is visible (naming how many GPUs there are)."""
    count = device_count()
    if not 0 <= index < count:
        raise UserError(f"device cuda:{index} asked for, but {count} CUDA GPU{'s are' if count > 1 else ' is'} "
                        f"visible (cuda:0..cuda:{count - 1}; CUDA_VISIBLE_DEVICES renumbers them)")


def set_device(index: int) -> None:
    """Make GPU ``index`` current for this thread (CUDA's current device is per thread), or a UserError naming
    how many GPUs there are. Library code uses :func:`on_device`, which gives the caller's device back."""
    check_index(index)
    make_current(index)


def make_current(index: int) -> None:
    """``cudaSetDevice(index)`` without the visibility check of :func:`set_device` (the hot path)."""
    check(runtime().cudaSetDevice(index))


def current_device() -> int:
    """This thread's current GPU (``cudaGetDevice``)."""
    return int(check(runtime().cudaGetDevice()))


@contextmanager
def on_device(index: int, checked: bool = False) -> Iterator[None]:
    """GPU ``index`` current on this thread inside the block, the caller's current device again after it (an app
    with its own CUDA work on another GPU is not moved). ``checked``: refuse an invisible ``index`` with a
    UserError first (:func:`check_index`). No CUDA call beyond ``cudaGetDevice`` when ``index`` is current."""
    if checked:
        check_index(index)
    previous = current_device()
    if previous != index:
        make_current(index)
    try:
        yield
    finally:
        if previous != index:
            make_current(previous)


def device_info(index: Optional[int] = None) -> Tuple[str, str]:
    """(name, compute capability "major.minor") of GPU ``index`` (default: the current device), or a UserError
    without a GPU."""
    cudart = runtime()
    device_count()
    device = check(cudart.cudaGetDevice()) if index is None else index
    props = check(cudart.cudaGetDeviceProperties(device))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return name.rstrip("\x00"), f"{props.major}.{props.minor}"


def malloc(nbytes: int) -> int:
    return int(check(runtime().cudaMalloc(nbytes)))


def free(ptr: int) -> None:
    check(runtime().cudaFree(ptr))


def stream_create() -> int:
    return int(check(runtime().cudaStreamCreate()))


def stream_destroy(stream: int) -> None:
    check(runtime().cudaStreamDestroy(stream))


def stream_sync(stream: int) -> None:
    check(runtime().cudaStreamSynchronize(stream))


def memcpy_htod(dst: int, src: Any, nbytes: int, stream: int) -> None:
    cudart = runtime()
    check(cudart.cudaMemcpyAsync(dst, src, nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))


def memcpy_dtoh(dst: Any, src: int, nbytes: int, stream: int) -> None:
    cudart = runtime()
    check(cudart.cudaMemcpyAsync(dst, src, nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))
