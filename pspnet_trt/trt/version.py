"""The one place that branches on the TensorRT version.

Users have 8.5 (JetPack 5), 8.6 and 10.3 (JetPack 6), 10.x and 11.x (desktop):
* strongly typed networks (precision from the ONNX: FP16 graph, Q/DQ INT8) exist from TensorRT 9/10;
* ``BuilderFlag.FP16/INT8`` (weak typing) were deprecated in 10.12 and removed in 11;
* the implicit INT8 calibrators were deprecated in 10.1 and removed in 11;
* ``IBuilderConfig.builder_optimization_level`` exists from 8.6 (not in 8.5's bindings);
* a Cast to UINT8 from INT32 (the ArgMax labels output) is refused before 10 ("kUINT8 conversions
  are not supported for kINT32" in 8.5/8.6), so labels are exported as INT32 there;
* ``IProgressMonitor`` exists from 10.0; tensor-address execution (``execute_async_v3``) from 8.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from ..artifacts import parse_version


@dataclass(frozen=True)
class Capabilities:
    version: Tuple[int, int, int]
    strongly_typed: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED
    precision_flags: bool  # BuilderFlag.FP16 / INT8 exist (deprecated from 10.12: see weak_typing_deprecated)
    weak_typing_deprecated: bool  # 10.12 - 10.x: the flags still work, with a deprecation warning
    implicit_int8: bool  # IInt8EntropyCalibrator2 exists
    opt_level: bool  # IBuilderConfig.builder_optimization_level
    uint8_labels: bool  # an INT32 -> UINT8 cast builds (else export the labels as int32)
    progress_monitor: bool  # IBuilderConfig.progress_monitor
    explicit_batch_flag: bool  # NetworkDefinitionCreationFlag.EXPLICIT_BATCH must be passed (TensorRT 8.x)

    @property
    def label(self) -> str:
        return ".".join(map(str, self.version))


def capabilities(version: str) -> Capabilities:
    v = parse_version(version)
    return Capabilities(
        version=v,
        strongly_typed=v >= (9, 0, 0),
        precision_flags=v < (11, 0, 0),
        weak_typing_deprecated=(10, 12, 0) <= v < (11, 0, 0),
        implicit_int8=v < (11, 0, 0),
        opt_level=v >= (8, 6, 0),
        uint8_labels=v >= (10, 0, 0),
        progress_monitor=v >= (10, 0, 0),
        explicit_batch_flag=v < (10, 0, 0),
    )
