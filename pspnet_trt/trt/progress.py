"""Build progress on the terminal through TensorRT's IProgressMonitor (TensorRT >= 10)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Dict

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)


def progress_monitor() -> trt.IProgressMonitor:
    import tensorrt as trt

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            super().__init__()
            self.steps: Dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: Any, num_steps: int) -> None:
            self.steps[phase_name] = num_steps
            log.info("build: %s (%d steps)", phase_name, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            total = self.steps.get(phase_name, 0)
            if total and (step + 1 == total or (step + 1) % max(total // 10, 1) == 0):
                log.info("build: %s %d/%d", phase_name, step + 1, total)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            self.steps.pop(phase_name, None)

    return Monitor()
