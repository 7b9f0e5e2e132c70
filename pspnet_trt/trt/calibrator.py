"""Implicit INT8 calibration (TensorRT < 11 only, deprecated since 10.1): an IInt8EntropyCalibrator2
that streams the calibration list, preprocessed exactly as at deploy time, with a cache in calibration/.

Prefer explicit Q/DQ (`pspnet-trt quantize`): its numerics are predicted by ONNX Runtime on the CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional

import numpy as np

from ..deploy import DeployInfo

if TYPE_CHECKING:
    import tensorrt as trt


def entropy_calibrator(calibration_list: str, info: DeployInfo, root: Optional[str] = None) -> trt.IInt8Calibrator:
    """An ``IInt8EntropyCalibrator2`` over ``calibration_list``, whose paths are relative to the dataset ``root``
    (defined here: its base class is TensorRT's)."""
    import tensorrt as trt

    from ..calibration import CalibrationList
    from ..runtime import cuda

    calib = CalibrationList.read(calibration_list, root)
    calib.check_input_size(info.input_size, calibration_list)
    # scales belong to one model, input size and set of weights: the cache name says which
    weights = (info.checkpoint_sha256 or "random")[:12]
    cache_file = Path("calibration") / (f"{Path(calibration_list).stem}_{info.model}_{info.input_size[0]}x"
                                        f"{info.input_size[1]}_{weights}.cache")

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.info = info
            self.error: Optional[str] = None  # TensorRT reads an exception in get_batch as "no more batches"
            self.count = 0
            self.batches = iter(calib.batches(self.info))
            shape = self.info.input_shape(1)
            self.nbytes = int(np.prod(shape)) * np.dtype(self.info.input_dtype).itemsize
            self.device = cuda.malloc(self.nbytes)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: List[str]) -> List[int]:
            try:
                batch = next(self.batches, None)
                if batch is None:
                    return []  # no more batches
                host = np.ascontiguousarray(batch, dtype=self.info.input_dtype)
                cuda.memcpy_htod(self.device, host.ctypes.data, self.nbytes, 0)
                cuda.stream_sync(0)
            except Exception as e:  # noqa: BLE001 - handed to build_engine, which raises it
                self.error = f"calibration image {self.count + 1} of {len(calib.images)} failed: {e}"
                return []
            self.count += 1
            return [self.device]

        def read_calibration_cache(self) -> Optional[bytes]:
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            from ..files import atomic_path

            with atomic_path(cache_file) as tmp:
                tmp.write_bytes(bytes(cache))

    return Calibrator()

