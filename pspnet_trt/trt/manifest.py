"""Writing the manifest beside every engine (the build's side).

``engines/NAME.engine.json`` holds the ONNX's DeployInfo (every preprocessing number) plus the
build facts: TensorRT version, GPU name and compute capability, precision, I/O, ONNX sha256,
flags, build seconds. Reading it and the checks that refuse an engine built elsewhere (another
TensorRT, another GPU, a file not written with its manifest) live in :mod:`pspnet_trt.artifacts`,
which the runtime reads without the build layer; they are re-exported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

from ..artifacts import (
    EngineMismatch,
    GpuInfo,
    Manifest,
    check_engine_file,
    check_manifest,
    manifest_path,
    read_manifest,
)
from ..files import write_json

__all__ = ["EngineMismatch", "GpuInfo", "Manifest", "check_engine_file", "check_manifest", "manifest_path",
           "read_manifest", "write_manifest"]


def write_manifest(engine: Union[str, Path], manifest: Manifest) -> Path:
    path = manifest_path(engine)
    write_json(path, manifest.to_dict())
    return path
