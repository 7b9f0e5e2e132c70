"""Validation records: what `pspnet-trt validate` (or `make engine`'s check) found, stored with the artifact.

* an engine: the ``validation`` block of its manifest (``NAME.engine.json``);
* an ONNX file: ``NAME.validation.json`` beside it.

A record holds the dataset, split, images, mIoU, delta and agreement vs PyTorch, the tolerance, the
verdict and the date (``kind: "miou"``), or, for an engine checked without a dataset, the labels
agreement on a folder of images and its threshold (``kind: "agreement"``). It also holds the artifact's
size and sha256, so a record left beside a re-exported file is recognised as stale. Core module: json
and files only (the runtime reads it without the build layer).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any, Dict, Optional, Union

from .errors import UserError
from .files import sha256_file, write_json

PathLike = Union[str, Path]
MANIFEST_KEY = "validation"


def is_onnx(artifact: PathLike) -> bool:
    return Path(artifact).suffix == ".onnx"


def record_path(artifact: PathLike) -> Path:
    """Where ``artifact``'s record lives: ``NAME.validation.json`` for an ONNX, the engine's manifest otherwise."""
    path = Path(artifact)
    return path.with_suffix(".validation.json") if is_onnx(path) else Path(f"{path}.json")


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def fingerprint(artifact: PathLike) -> Dict[str, Any]:
    """The artifact's size and sha256, which bind a record to the file it was made for."""
    path = Path(artifact)
    return {"artifact": path.name, "artifact_bytes": path.stat().st_size, "artifact_sha256": sha256_file(path)}


def write_record(artifact: PathLike, record: Dict[str, Any]) -> Path:
    """Store ``record`` as ``artifact``'s validation record (atomically); returns the file written."""
    path = record_path(artifact)
    if is_onnx(artifact):
        write_json(path, record)
        return path
    if not path.is_file():
        raise UserError(f"{artifact} has no manifest ({path}) to record its validation in; build it with "
                        "`pspnet-trt build`")
    manifest = _read_json(path)
    manifest[MANIFEST_KEY] = record
    write_json(path, manifest)
    return path


def read_record(artifact: PathLike) -> Optional[Dict[str, Any]]:
    """``artifact``'s validation record, or None if it was never validated."""
    path = record_path(artifact)
    if not path.is_file():
        return None
    data = _read_json(path)
    record = data if is_onnx(artifact) else data.get(MANIFEST_KEY)
    if record is not None and not isinstance(record, dict):
        raise UserError(f"{path}: the validation record is not a JSON object; validate {artifact} again")
    return record


def _read_json(path: Path) -> Dict[str, Any]:
    from .deploy import json_problem

    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is {json_problem(e, text)} ({e})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a JSON object")
    return data


def stale(artifact: PathLike, record: Dict[str, Any], full: bool = False) -> Optional[str]:
    """Why ``record`` is not about the file at ``artifact`` now (size, or sha256 with ``full``), or None."""
    path = Path(artifact)
    size = record.get("artifact_bytes")
    if size is not None and size != path.stat().st_size:
        return f"it was made for a file of {size} bytes, this one has {path.stat().st_size}"
    if full and record.get("artifact_sha256") and record["artifact_sha256"] != sha256_file(path):
        return "it was made for a file with another sha256"
    return None


def summary(record: Dict[str, Any]) -> str:
    """One line: the verdict and its numbers."""
    verdict = "PASS" if record.get("passed") else "FAIL"
    if record.get("kind") == "agreement":
        return (f"{verdict} (labels agreement only, no dataset): {_num(record.get('agreement'), '.3f')} % of pixels agree "
                f"with PyTorch on {record.get('images')} images in {record.get('images_dir')} (threshold "
                f"{_num(record.get('threshold'), '.2f')} %, out-of-range px {record.get('invalid_pixels', '-')}), "
                f"{record.get('date', '?')}")
    return (f"{verdict} on {record.get('dataset')} {record.get('split')} ({record.get('images')} images, "
            f"{record.get('mode', 'whole')}): mIoU {_num(record.get('miou'), '.2f')} ({_num(record.get('delta'), '+.2f')} "
            f"vs PyTorch {_num(record.get('reference_miou'), '.2f')}, tolerance {record.get('tolerance')}), agreement "
            f"{_num(record.get('agreement'), '.3f')} %, out-of-range px {record.get('invalid_pixels', '-')}, "
            f"{record.get('date', '?')}" + (f"; report {record['report']}" if record.get("report") else ""))


def _num(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def open_warning(artifact: PathLike, model: str) -> Optional[str]:
    """The warning `Segmenter.open` logs for an artifact that was never validated (or failed, or is stale)."""
    flag = "--onnx" if is_onnx(artifact) else "--engine"
    fix = f"run `pspnet-trt validate --model {model} --data ROOT {flag} {artifact} --report DIR` before shipping it"
    try:
        record = read_record(artifact)
    except UserError as e:
        return f"{artifact}: its validation record is unreadable ({e}); {fix}"
    if record is None:
        return f"{artifact} was never validated against the PyTorch model: {fix}"
    why = stale(artifact, record)
    if why:
        return f"{artifact}: its validation record is stale ({why}); {fix}"
    if not record.get("passed"):
        return f"{artifact} FAILED its validation: {summary(record)}"
    if record.get("kind") == "agreement":
        return (f"{artifact} was only checked for labels agreement with PyTorch on {record.get('images')} images, "
                f"not validated on a dataset: {fix}")
    return None
