"""The artifact contract: what kinds of artifact there are and how any of them describes itself.

An artifact is an exported ONNX file (``NAME.onnx``, its :class:`~pspnet_trt.deploy.DeployInfo` in the
ONNX metadata) or a TensorRT engine (``NAME.engine`` / ``.plan`` / ``.trt`` with its manifest
``NAME.engine.json`` beside it, which holds the DeployInfo of the ONNX it was built from). Every stage asks
this module, and no other module tests a suffix or parses metadata:

    kind("m.onnx")            -> "onnx"          kind("m.engine") -> "engine"
    read_info(path)           -> DeployInfo      (input format, sizes, classes, precision, batch, ...)
    batch_range(path)         -> (1, None)       (static n: (n, n); a dynamic engine: (1, its --max-batch))
    record_path(path)         -> where its validation record lives
    check_file(path)          -> a UserError naming a missing, truncated or non-ONNX file
    check_out(out, "onnx", inputs=[...]) -> a UserError for an output of the wrong kind, or one of the inputs

Core module: json and the standard library only (no onnx, onnxruntime or tensorrt), so a TensorRT-only
install reads everything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .deploy import ARTIFACT_PRECISIONS, BUILD_PRECISIONS, METADATA_KEY, DeployInfo, json_problem
from .errors import UserError
from .files import check_outputs

log = logging.getLogger(__name__)
PathLike = Union[str, Path]
ONNX_SUFFIX = ".onnx"
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
KINDS = ("onnx", "engine")

__all__ = ["ARTIFACT_PRECISIONS", "artifact_name", "BUILD_PRECISIONS", "ENGINE_SUFFIXES", "KINDS", "ONNX_SUFFIX", "EngineMismatch",
           "GpuInfo", "Manifest", "check_engine_file", "check_manifest", "parse_version", "same_engine_version",
           "batch_range", "check_file", "check_out", "is_onnx", "kind", "kind_or_none", "manifest_path",
           "read_info", "read_json_object", "read_manifest", "read_onnx_info", "read_onnx_metadata", "record_path", "attach_metadata",
           "save_onnx"]


# -- kinds ----------------------------------------------------------------------------------------

def kind_or_none(path: PathLike) -> Optional[str]:
    """``"onnx"``, ``"engine"``, or None for any other name (e.g. a zoo name)."""
    suffix = Path(path).suffix.lower()
    if suffix == ONNX_SUFFIX:
        return "onnx"
    if suffix in ENGINE_SUFFIXES:
        return "engine"
    return None


def kind(path: PathLike) -> str:
    """``"onnx"`` or ``"engine"`` by the file name; a UserError for anything else."""
    k = kind_or_none(path)
    if k is None:
        raise UserError(f"{path}: unknown artifact type; expected {ONNX_SUFFIX} or {'/'.join(ENGINE_SUFFIXES)} "
                        "(an exported ONNX or a TensorRT engine)")
    return k


def is_onnx(path: PathLike) -> bool:
    return kind_or_none(path) == "onnx"


def record_path(artifact: PathLike) -> Path:
    """Where ``artifact``'s validation record lives: ``NAME.validation.json`` beside an ONNX, the engine's
    manifest otherwise (its ``validation`` block; see :mod:`pspnet_trt.records`)."""
    path = Path(artifact)
    return path.with_suffix(".validation.json") if is_onnx(path) else manifest_path(path)


# -- ONNX files: metadata without onnx/onnxruntime -------------------------------------------------

def _varint(data: bytes, pos: int) -> Tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


_MODEL_PROTO_MAX_FIELD = 32  # ModelProto's field numbers are 1..26 today; anything far beyond is not ONNX
# ModelProto fields (number: wire type) that a file can start with; anything else at byte 0 is not ONNX
_FIRST_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}


def read_onnx_metadata(path: PathLike) -> Dict[str, str]:
    """``metadata_props`` of an ONNX file without onnx or onnxruntime (for TensorRT-only installs).

    Walks the top-level protobuf fields of ModelProto and decodes field 14 (StringStringEntryProto
    entries); everything else, the graph included, is skipped by its length. A ValueError names an empty,
    truncated or non-ONNX file.
    """
    data = Path(path).read_bytes()
    pos, out = 0, {}
    fields: set[int] = set()
    if not data:
        raise ValueError(f"{path} is empty, not an ONNX file: export it again")
    truncated = ValueError(f"{path} is truncated ({len(data)} bytes; its last field runs past the end of the file): "
                           "copy or export it again")
    try:
        while pos < len(data):
            tag, pos = _varint(data, pos)
            field_no, wire = tag >> 3, tag & 7
            if not 1 <= field_no <= _MODEL_PROTO_MAX_FIELD or (not fields and _FIRST_FIELDS.get(field_no) != wire):
                raise ValueError(f"field {field_no} of wire type {wire}")
            fields.add(field_no)
            if wire == 0:
                _, pos = _varint(data, pos)
            elif wire == 2:
                length, pos = _varint(data, pos)
                if pos + length > len(data):
                    raise truncated
                chunk, pos = data[pos:pos + length], pos + length
                if field_no == 14:
                    entry, p = {}, 0
                    while p < len(chunk):
                        t, p = _varint(chunk, p)
                        n, p = _varint(chunk, p)
                        entry[t >> 3] = chunk[p:p + n].decode()
                        p += n
                    out[entry.get(1, "")] = entry.get(2, "")
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
                if pos > len(data):
                    raise truncated
            else:
                raise ValueError(f"unexpected wire type {wire}")
    except IndexError:  # a varint cut off by the end of the file
        raise truncated from None
    except (ValueError, UnicodeDecodeError) as e:
        if e is truncated:
            raise
        raise ValueError(f"{path} is not an ONNX file (no ONNX model structure: {e}); pass an exported .onnx") from None
    if 7 not in fields:
        raise ValueError(f"{path} is not an ONNX file (it holds no graph); pass an exported .onnx")
    return out


def read_onnx_info(path: PathLike) -> DeployInfo:
    """The DeployInfo stored in an exported ONNX file (no onnx/onnxruntime needed)."""
    if not Path(path).is_file():
        raise UserError(f"ONNX file {path} does not exist; export it with `pspnet-trt export`")
    try:
        meta = read_onnx_metadata(path)
    except (OSError, ValueError) as e:
        raise UserError(str(e)) from None
    if METADATA_KEY not in meta:
        raise UserError(f"{path} carries no pspnet-trt metadata (key {METADATA_KEY!r}); export it with `pspnet-trt export`")
    return DeployInfo.from_json(meta[METADATA_KEY], source=path)


def attach_metadata(model: Any, info: DeployInfo) -> Any:
    """Store ``info`` in an ``onnx.ModelProto`` under :data:`METADATA_KEY` (and a few readable keys for tools
    like Netron): what :func:`read_onnx_info` reads back."""
    from .version import __version__

    entries = {
        METADATA_KEY: info.to_json(),
        "model": info.model,
        "input_size": f"{info.input_size[0]}x{info.input_size[1]}",
        "precision": info.precision,
        "output": info.output,
        "input_format": info.input_format,
    }
    if info.frame_size is not None:
        entries["frame_size"] = f"{info.frame_size[0]}x{info.frame_size[1]}"
    del model.metadata_props[:]
    for key, value in entries.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    model.producer_name, model.producer_version = "pspnet-trt", __version__
    model.doc_string = f"PSPNet {info.model} {info.input_size[0]}x{info.input_size[1]} {info.precision} -> {info.output}"
    return model


def save_onnx(model: Any, out: PathLike) -> Path:
    """Write atomically (the file appears complete or not at all)."""
    from .deps import require
    from .files import atomic_path

    onnx = require("onnx", "writing an ONNX file")
    out = Path(out)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    return out


# -- engines: the manifest beside the engine --------------------------------------------------------

@dataclass
class Manifest:
    """``NAME.engine.json``: the ONNX's DeployInfo plus the build facts (see :mod:`pspnet_trt.trt.manifest`)."""

    deploy: Dict[str, Any]  # DeployInfo.to_dict() of the ONNX it was built from
    tensorrt_version: str
    gpu: Dict[str, str]
    precision: str
    input_name: str
    input_shape: List[int]
    outputs: List[str]
    onnx: str
    onnx_sha256: str
    engine_sha256: str = ""  # of the engine file this manifest was written with ("" = older pspnet-trt)
    engine_bytes: int = 0
    build_flags: Dict[str, Any] = field(default_factory=dict)
    build_seconds: float = 0.0
    validation: Optional[Dict[str, Any]] = None  # the latest verdict of `validate` / `engine` (pspnet_trt.records)

    @property
    def info(self) -> DeployInfo:
        return DeployInfo.from_dict(self.deploy)

    @property
    def max_batch(self) -> Optional[int]:
        """The largest batch of a dynamic-batch engine's optimisation profile (None: static, or not recorded)."""
        value = self.build_flags.get("max_batch")
        return None if self.info.batch is not None or value is None else int(value)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> Manifest:
        try:
            return cls(**d)
        except TypeError as e:
            raise UserError(f"invalid engine manifest ({e})") from None


def read_json_object(path: PathLike, fix: str = "") -> Dict[str, Any]:
    """The JSON object in ``path`` (a manifest, a validation record); a UserError naming a truncated or invalid
    file, with ``fix`` appended."""
    text = Path(path).read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is {json_problem(e, text)} ({e}){fix}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a JSON object{fix}")
    return data


def manifest_path(engine: PathLike) -> Path:
    return Path(f"{engine}.json")


def read_manifest(engine: PathLike) -> Manifest:
    """The manifest beside ``engine``; a UserError naming a missing, truncated or unreadable one."""
    path = manifest_path(engine)
    if not path.is_file():
        raise UserError(f"{engine} has no manifest ({path}); engines built by `pspnet-trt build` carry one. "
                        "Rebuild it with `pspnet-trt build --onnx MODEL.onnx --out ...`")
    data = read_json_object(path, "; rebuild the engine")
    try:
        manifest = Manifest.from_dict(data)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    DeployInfo.from_dict(manifest.deploy, source=path)  # unreadable metadata: one line naming the manifest
    return manifest


# -- engines: where they may run ------------------------------------------------------------------

def parse_version(text: str) -> Tuple[int, int, int]:
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        raise ValueError(f"cannot parse TensorRT version {text!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def same_engine_version(built: str, running: str) -> bool:
    """Engines are only portable within the same TensorRT major.minor.patch."""
    return parse_version(built) == parse_version(running)


class EngineMismatch(UserError):
    """The engine was built for another TensorRT or GPU."""


@dataclass
class GpuInfo:
    name: str
    compute_capability: str  # "8.7"


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


# -- any artifact ----------------------------------------------------------------------------------

def check_file(path: PathLike) -> str:
    """The kind of ``path`` after checking it can be read as one: a UserError naming a missing file, an engine
    without its manifest, or an empty / truncated / non-ONNX ``.onnx``."""
    k = kind(path)
    if not Path(path).is_file():
        hint = "export it with `pspnet-trt export`" if k == "onnx" else "build it with `pspnet-trt build`"
        raise UserError(f"{path} does not exist; {hint}")
    if k == "onnx":
        try:
            read_onnx_metadata(path)
        except ValueError as e:
            raise UserError(str(e)) from None
    else:
        read_manifest(path)
    return k


def check_out(out: PathLike, kind_: str, inputs: Any = (), also: Any = ()) -> Path:
    """``out`` as the output artifact of kind ``kind_`` ("onnx" or "engine") of a command reading ``inputs``:
    a one-line UserError when its name is not of that kind, or when it (or a file in ``also`` the command writes
    beside it) is one of the inputs (:func:`pspnet_trt.files.check_outputs`)."""
    out = Path(out)
    if kind_or_none(out) != kind_:
        want = ONNX_SUFFIX if kind_ == "onnx" else "/".join(ENGINE_SUFFIXES)
        raise UserError(f"output {out} is not a {want} file name: pass --out NAME{want.split('/')[0]}")
    check_outputs([out, *also], inputs)
    return out


def read_info(path: PathLike) -> DeployInfo:
    """What any artifact says about itself: the ONNX metadata, or the engine manifest's copy of it."""
    if kind(path) == "onnx":
        return read_onnx_info(path)
    if not Path(path).is_file():
        raise UserError(f"engine {path} does not exist; build it with `pspnet-trt build`")
    return read_manifest(path).info


def batch_range(path: PathLike) -> Tuple[int, Optional[int]]:
    """(least, most) images one call of the artifact takes: ``(n, n)`` for a static batch of n, ``(1, None)``
    for a dynamic-batch ONNX, ``(1, max)`` for a dynamic-batch engine (its optimisation profile)."""
    info = read_info(path)
    if info.batch is not None:
        return info.batch, info.batch
    return 1, read_manifest(path).max_batch if kind(path) == "engine" else None


def artifact_name(model: str, precision: str, input_size: Optional[Sequence[int]] = None,
                  frame_size: Optional[Sequence[int]] = None, input_format: Optional[str] = None,
                  suffix: str = ".onnx") -> str:
    """``<model>_<H>x<W>[_frame<FH>x<FW>|_pixels]_<precision><suffix>``: the one name of a built artifact
    (``input_size`` default: the zoo's deploy size; a ``frame_size`` means input format bgr8)."""
    from .zoo import get_spec

    h, w = input_size or get_spec(model).deploy_size
    fmt = input_format or ("bgr8" if frame_size else "normalized")
    if (fmt == "bgr8") != (frame_size is not None):
        raise UserError("a raw-frame (bgr8) artifact needs its frame size, and only it has one")
    tag = f"_frame{frame_size[0]}x{frame_size[1]}" if frame_size else "" if fmt == "normalized" else f"_{fmt}"
    return f"{model}_{h}x{w}{tag}_{precision}{suffix}"
