"""Validation records: what `pspnet-trt validate` (or `make engine`'s check) found, stored with the artifact.

* an engine: the ``validation`` block of its manifest (``NAME.engine.json``);
* an ONNX file: ``NAME.validation.json`` beside it.

A record holds the dataset, split, images, mIoU, delta and agreement vs PyTorch, the tolerance and agreement
floor, the verdict, why it failed (``why``: the rules of pspnet_trt/validate/gate.py it broke) and the date
(``kind: "miou"``), or, for an engine checked without a dataset, the labels agreement on a folder of images, its
threshold and why it failed (``kind: "agreement"``). It also holds the artifact's
size and sha256, so a record left beside a re-exported file is recognised as stale. A mIoU record states
how many images it covers and how many its split has: under :data:`FULL_VALIDATION_IMAGES` (or the whole
split, if that is smaller) it is *partial*, and `Segmenter.open` keeps warning. Core module: json and files
only (the runtime reads it without the build layer).

Every command this module suggests runs as written once ``ROOT`` (the dataset root) and ``DIR`` (a report
folder) are filled in: :func:`validate_command` names the checkpoint the artifact was exported from.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any, Dict, Optional, Union

from .artifacts import is_onnx, read_info, read_json_object, record_path
from .deploy import DeployInfo
from .errors import UserError
from .files import sha256_file, write_json

PathLike = Union[str, Path]
MANIFEST_KEY = "validation"
# A mIoU record over fewer images than this, and fewer than its whole split, is partial: a --limit 4 smoke run
# says nothing about the mIoU an artifact keeps on the dataset.
FULL_VALIDATION_IMAGES = 50


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
    manifest = read_json_object(path)
    manifest[MANIFEST_KEY] = record
    write_json(path, manifest)
    return path


def read_record(artifact: PathLike) -> Optional[Dict[str, Any]]:
    """``artifact``'s validation record, or None if it was never validated."""
    path = record_path(artifact)
    if not path.is_file():
        return None
    data = read_json_object(path)
    record = data if is_onnx(artifact) else data.get(MANIFEST_KEY)
    if record is not None and not isinstance(record, dict):
        raise UserError(f"{path}: the validation record is not a JSON object; validate {artifact} again")
    return record


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
    if not record.get("passed") and record.get("why"):
        verdict += f" ({'; '.join(map(str, record['why']))})"
    if partial(record):
        verdict += f" (partial: {_coverage(record)})"
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


def full_minimum(split_images: Optional[int]) -> int:
    """Images a mIoU validation must cover to be full: :data:`FULL_VALIDATION_IMAGES`, or the whole split if it
    is smaller (split size unknown: the minimum)."""
    return FULL_VALIDATION_IMAGES if split_images is None else min(FULL_VALIDATION_IMAGES, int(split_images))


def partial(record: Dict[str, Any]) -> bool:
    """True for a mIoU record over fewer images than :func:`full_minimum` of its split."""
    if record.get("kind", "miou") != "miou":
        return False
    return int(record.get("images") or 0) < full_minimum(record.get("split_images"))


def _coverage(record: Dict[str, Any]) -> str:
    of = f" of the {record['split_images']}" if record.get("split_images") is not None else ""
    split = f" {record['split']}" if record.get("split") else ""
    return (f"{record.get('images')}{of}{split} images; a full validation covers at least "
            f"{full_minimum(record.get('split_images'))}")


def _shown(path: Path) -> str:
    """``path`` as a command line shows it: relative to the working folder when it lies inside it."""
    import os
    import shlex

    path = Path(os.path.abspath(path))
    try:
        text = str(path.relative_to(Path.cwd()))
    except ValueError:
        text = str(path)
    return shlex.quote(text)


def checkpoint_file(info: DeployInfo) -> Optional[Path]:
    """The checkpoint file ``info``'s artifact was exported from, found by its sha256: the one this repository
    ships for the model, the path the export recorded (``extra["checkpoint"]``), or the published one in the
    download cache. None for random weights or a checkpoint that is none of those."""
    from .checkpoints import cache_dir, shipped_checkpoint
    from .files import sha256_file
    from .zoo import ZOO

    if info.checkpoint_sha256 is None:
        return None
    spec = ZOO.get(info.model)
    candidates = [shipped_checkpoint(info.model) if spec is not None else None]
    if info.extra.get("checkpoint"):
        candidates.append(Path(str(info.extra["checkpoint"])))
    if spec is not None and spec.urls:
        candidates.append(cache_dir() / spec.checkpoint_files[0])
    for path in candidates:
        if path is not None and path.is_file() and sha256_file(path) == info.checkpoint_sha256:
            return path
    return None


def validate_command(artifact: PathLike, info: Optional[DeployInfo] = None) -> Optional[str]:
    """The `pspnet-trt validate` command line for ``artifact``, with the checkpoint it was exported from; only
    ``ROOT`` (dataset root) and ``DIR`` (report folder) are left to fill in. None when that checkpoint is not
    known here (random weights, or a file found nowhere by its sha256)."""
    import shlex

    from .zoo import ZOO

    info = info or read_info(artifact)
    ckpt = checkpoint_file(info)
    if ckpt is None:
        return None
    spec = ZOO.get(info.model)
    # an unnamed class list (export --num-classes) needs the flag again; a checkpoint that records its classes not
    unnamed = info.class_names == tuple(f"class_{i}" for i in range(info.num_classes))
    classes = (f" --num-classes {info.num_classes}"
               if spec is not None and spec.num_classes != info.num_classes and unnamed else "")
    flag = "--onnx" if is_onnx(artifact) else "--engine"
    return (f"pspnet-trt validate --model {info.model} --checkpoint {_shown(ckpt)}{classes} --data ROOT "
            f"{flag} {shlex.quote(str(artifact))} --report DIR")


def validate_advice(artifact: PathLike, info: Optional[DeployInfo] = None) -> str:
    """How to validate ``artifact``: run `the command` (:func:`validate_command`), or, when the checkpoint it was
    exported from is not known here, which checkpoint to pass."""
    try:
        info = info or read_info(artifact)
        command = validate_command(artifact, info)
    except UserError:
        return "validate it with pspnet-trt validate and the checkpoint it was exported from"
    if command:
        return f"run `{command}`"
    return ("validate it with pspnet-trt validate and the checkpoint it was exported from (sha256 "
            f"{str(info.checkpoint_sha256)[:16]}...)")


def random_weights_warning(artifact: PathLike, info: DeployInfo) -> Optional[str]:
    """The line every open and `info` show for an artifact exported without a checkpoint, else None."""
    if info.checkpoint_sha256 is not None:
        return None
    return (f"{artifact} holds RANDOM WEIGHTS (exported without a checkpoint, for plumbing and speed only): its "
            "predictions mean nothing; export it again from a checkpoint (without --random-weights)")


def open_warning(artifact: PathLike, model: Union[str, DeployInfo, None] = None) -> Optional[str]:
    """The warning `Segmenter.open` logs for an artifact with random weights, or one that was never validated,
    failed, whose record is stale, that was only agreement-checked or validated on part of a split. ``model``:
    the artifact's DeployInfo if the caller has it (else it is read from the file; a zoo name is ignored)."""
    try:
        info = model if isinstance(model, DeployInfo) else read_info(artifact)
    except UserError as e:
        return f"{artifact}: its metadata is unreadable ({e})"
    random = random_weights_warning(artifact, info)
    if random:
        return random
    try:
        record = read_record(artifact)
    except UserError as e:
        return f"{artifact}: its validation record is unreadable ({e}); {validate_advice(artifact, info)}"
    if record is None:
        return (f"{artifact} was never validated against the PyTorch model: {validate_advice(artifact, info)} before "
                "shipping it")
    why = stale(artifact, record)
    if why:
        return f"{artifact}: its validation record is stale ({why}); {validate_advice(artifact, info)}"
    if not record.get("passed"):
        return f"{artifact} FAILED its validation: {summary(record)}"
    if record.get("kind") == "agreement":
        return (f"{artifact} was only checked for labels agreement with PyTorch on {record.get('images')} images, "
                f"not validated on a dataset: {validate_advice(artifact, info)}")
    if partial(record):
        return f"{artifact} passed a partial validation only ({_coverage(record)}): {validate_advice(artifact, info)}"
    return None
