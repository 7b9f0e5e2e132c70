"""The manifest beside every engine, and the check that refuses an engine built elsewhere.

``engines/NAME.engine.json`` holds the ONNX's DeployInfo (every preprocessing number) plus the
build facts: TensorRT version, GPU name and compute capability, precision, I/O, ONNX sha256,
flags, build seconds. Engines do not port across TensorRT versions or GPU architectures, so
loading compares the manifest with the running TensorRT and GPU *before* deserializing.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from ..artifacts import Manifest, manifest_path, read_manifest
from ..errors import UserError
from ..files import write_json
from .version import same_engine_version

__all__ = ["EngineMismatch", "GpuInfo", "Manifest", "check_engine_file", "check_manifest", "manifest_path",
           "read_manifest", "write_manifest"]
log = logging.getLogger(__name__)


class EngineMismatch(UserError):
    """The engine was built for another TensorRT or GPU."""


@dataclass
class GpuInfo:
    name: str
    compute_capability: str  # "8.7"


def write_manifest(engine: Union[str, Path], manifest: Manifest) -> Path:
    path = manifest_path(engine)
    write_json(path, manifest.to_dict())
    return path


def check_engine_file(manifest: Manifest, data: bytes, engine: Union[str, Path]) -> None:
    """Refuse an engine file that is not the one its manifest was written with (a build interrupted between
    the engine and the manifest, or a file copied over another): every number the runtime uses comes from
    the manifest."""
    if not manifest.engine_sha256:
        log.warning("%s: its manifest records no engine sha256 (written by an older pspnet-trt), so it cannot be "
                    "checked against the engine; rebuild it to record one", manifest_path(engine))
        return
    sha = hashlib.sha256(data).hexdigest()
    if len(data) != manifest.engine_bytes or sha != manifest.engine_sha256:
        raise UserError(f"{engine} does not match its manifest {manifest_path(engine)} (engine: {len(data)} bytes, "
                        f"sha256 {sha[:12]}; manifest: {manifest.engine_bytes} bytes, sha256 "
                        f"{manifest.engine_sha256[:12]}): they were not written together (an interrupted build or a "
                        f"copied file); rebuild it with `pspnet-trt build --onnx {manifest.onnx} --precision "
                        f"{manifest.precision} --out {engine}`")


def check_manifest(manifest: Manifest, engine: Union[str, Path], running_trt: str, gpu: Optional[GpuInfo]) -> None:
    """Refuse an engine built by another TensorRT or for another GPU, with the command that fixes it."""
    rebuild = f"rebuild it here with `pspnet-trt build --onnx {manifest.onnx} --precision {manifest.precision} --out {engine}`"
    if not same_engine_version(manifest.tensorrt_version, running_trt):
        raise EngineMismatch(f"{engine} was built with TensorRT {manifest.tensorrt_version} but this is TensorRT "
                             f"{running_trt}; engines do not port across TensorRT versions: {rebuild}")
    if gpu is not None and manifest.gpu.get("compute_capability") != gpu.compute_capability:
        raise EngineMismatch(f"{engine} was built for {manifest.gpu.get('name')} (compute capability "
                             f"{manifest.gpu.get('compute_capability')}) but this GPU is {gpu.name} "
                             f"({gpu.compute_capability}); {rebuild}")
    if gpu is not None and manifest.gpu.get("name") != gpu.name:  # same architecture, another model: may run slower
        log.warning("%s was built on %s, this is %s (same compute capability %s): TensorRT does not promise the "
                    "engine is optimal or portable across GPU models; %s", engine, manifest.gpu.get("name"), gpu.name,
                    gpu.compute_capability, rebuild)
