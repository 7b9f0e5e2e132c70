"""Latency and throughput of a backend: warm-up, then a fixed number of timed iterations.

Wall-clock per call (``time.perf_counter``) around the full ``run`` (host copies included, what an app
sees). For TensorRT engines :func:`gpu_latency` also times the device work alone with CUDA events.
Quote medians: these machines are noisy.
"""

from __future__ import annotations

import platform
import socket
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional

import numpy as np

from .runtime.backend import Backend


@dataclass
class Latency:
    backend: str
    precision: str
    input_size: List[int]
    batch: int
    iterations: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    throughput_ips: float  # images per second at this batch
    gpu_p50_ms: Optional[float] = None  # CUDA events, device work only (TensorRT)
    power_w: Optional[float] = None  # mean board power while timing (tegrastats on Jetson)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def percentile(values: List[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def measure(backend: Backend, iterations: int = 20, warmup: int = 3, batch: Optional[int] = None,
            seed: int = 0) -> Latency:
    """Time ``backend.run`` on the artifact's input for ``batch`` random frames, made by the runtime's one door
    (:func:`pspnet_trt.runtime.inference.prepare`): normalised NCHW at the input size, uint8 frames at the frame
    size for a raw-frame (bgr8) artifact, 0..255 floats for a pixels artifact."""
    from .runtime.inference import prepare

    n = batch or backend.info.batch or 1
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (*backend.info.output_size, 3), dtype=np.uint8)
    x = prepare([frame] * n, backend.info, batch=n)[0].copy()
    for _ in range(warmup):
        backend.run(x)
    times = []
    for _ in range(iterations):
        t = time.perf_counter()
        backend.run(x)
        times.append((time.perf_counter() - t) * 1e3)
    p50 = statistics.median(times)
    return Latency(backend.name, backend.info.precision, list(backend.info.input_size), n, iterations, p50,
                   percentile(times, 90), percentile(times, 99), statistics.fmean(times), 1e3 * n / p50)


def gpu_latency(backend: Any, iterations: int = 50, warmup: int = 10) -> float:
    """Median device time (ms) of ``infer_device`` between two CUDA events (TensorRT backend only)."""
    from .runtime import cuda

    cudart = cuda.runtime()
    bufs = backend.device_buffers()  # the backend's own device buffers, at its batch
    stream = bufs.stream
    inp = bufs.device[backend.info.input_name]
    outs = {n: bufs.device[n] for n in backend.outputs}
    start, end = cuda.check(cudart.cudaEventCreate()), cuda.check(cudart.cudaEventCreate())
    times = []
    for i in range(warmup + iterations):
        cuda.check(cudart.cudaEventRecord(start, stream))
        backend.infer_device(inp, outs, stream, bufs.batch)
        cuda.check(cudart.cudaEventRecord(end, stream))
        cuda.check(cudart.cudaEventSynchronize(end))
        if i >= warmup:
            times.append(float(cuda.check(cudart.cudaEventElapsedTime(start, end))))
    return statistics.median(times)


def host() -> Dict[str, Any]:
    """Where a figure was measured: every benchmark JSON starts with this. ``cpu`` is the CPU model, class and
    the instruction-set flags kernels dispatch on (:mod:`pspnet_trt.cpu`): figures from CPUs of another
    class (VNNI or not, AVX-512 or AVX2) are not comparable."""
    import os

    from .cpu import cpu_info

    cpu = cpu_info()
    return {"host": socket.gethostname(), "machine": platform.machine(), "processor": platform.processor() or cpu.model,
            "cpus": os.cpu_count(), "python": platform.python_version(), "cpu": cpu.to_dict()}


def parse_tegrastats(line: str) -> Optional[float]:
    """Total board power in watts from one tegrastats line (``VDD_IN 5012mW/...`` or ``POM_5V_IN 3765/3765``)."""
    import re

    m = re.search(r"(?:VDD_IN|POM_5V_IN)\s+(\d+)(?:mW)?/", line)
    return int(m.group(1)) / 1000 if m else None
