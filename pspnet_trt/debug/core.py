"""``debug_artifacts``: resolve the two artifacts and the images, compare layer by layer, optionally fix."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, List, Optional, Tuple, Union

import numpy as np

from ..artifacts import check_file, is_onnx, read_info, read_manifest
from ..deploy import DeployInfo
from ..errors import UserError
from ..preprocess import read_image
from ..runtime.inference import at_frame_size
from .compare import FACTOR, Comparison, compare_layers
from .fix import FixResult, fix_artifact
from .report import write_report

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
PathLike = Union[str, Path]


def _artifact(path: Path, artifact_onnx: Optional[PathLike]) -> Tuple[DeployInfo, Optional[Path]]:
    """DeployInfo of the artifact and, for an engine, the ONNX it was built from."""
    if check_file(path) == "onnx":
        return read_info(path), None
    manifest = read_manifest(path)
    onnx_path = Path(artifact_onnx or manifest.onnx)
    if not onnx_path.is_file():
        raise UserError(f"{path} was built from {onnx_path}, which is not here: pass it with --artifact-onnx "
                        "(every tensor is marked by rebuilding the engine from its ONNX)")
    return manifest.info, onnx_path


def _reference(ref: str, checkpoint: Optional[PathLike], art_info: DeployInfo, tmp: Path) -> Path:
    """An ONNX path, or a zoo name exported (FP32, the artifact's input size) with ``checkpoint``."""
    path = Path(ref)
    if is_onnx(path):
        check_file(path)
        return path
    from ..export.onnx_export import export_zoo
    from ..zoo import get_spec

    get_spec(ref)  # a clear error for an unknown name
    out = tmp / "reference_fp32.onnx"
    return export_zoo(ref, out, checkpoint=checkpoint, input_size=art_info.input_size, output=art_info.output,
                      num_classes=art_info.num_classes)


def _check_pair(ref_info: DeployInfo, art_info: DeployInfo, ref: Path, art: Path) -> None:
    if tuple(ref_info.input_size) != tuple(art_info.input_size):
        raise UserError(f"{ref} takes {ref_info.input_size} but {art} takes {art_info.input_size}: compare artifacts "
                        "of one input size (export the reference at the artifact's size)")
    if ref_info.normalization != art_info.normalization or ref_info.num_classes != art_info.num_classes:
        raise UserError(f"{ref} and {art} differ in normalisation or class count: they are not the same model")


def load_images(info: DeployInfo, data: Optional[PathLike], images: int, images_dir: Optional[PathLike],
                split: Optional[str]) -> Tuple[List[Any], List[np.ndarray], List[str]]:
    """(labelled samples or [], BGR images, names): each runner gets them in its own input format."""
    if (data is None) == (images_dir is None):
        raise UserError("give the images: --data ROOT [--images N] (labelled, needed by --fix) or --images-dir DIR")
    if images < 1:
        raise UserError(f"--images must be at least 1, got {images}")
    if images_dir is not None:
        folder = Path(images_dir)
        if not folder.is_dir():
            raise UserError(f"--images-dir {folder} is not a folder")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:images]
        if not files:
            raise UserError(f"--images-dir {folder} holds no {'/'.join(IMAGE_SUFFIXES)} images")
        raw = [read_image(str(p)) for p in files]
        names = [p.name for p in files]
        samples: List[Any] = []
    else:
        assert data is not None
        from ..data import dataset_for_spec
        from ..zoo import get_spec

        dataset = dataset_for_spec(get_spec(info.model), data, split)
        samples = [dataset[i] for i in range(min(images, len(dataset)))]
        raw, names = [s.image for s in samples], [s.name for s in samples]
    return samples, raw, names


def debug_artifacts(reference: str, artifact: PathLike, data: Optional[PathLike] = None, images: int = 4,
                    images_dir: Optional[PathLike] = None, split: Optional[str] = None,
                    checkpoint: Optional[PathLike] = None, artifact_onnx: Optional[PathLike] = None,
                    report_dir: Optional[PathLike] = None, fix_budget: Optional[float] = None,
                    fix_out: Optional[PathLike] = None, calibration: Optional[PathLike] = None,
                    float_dtype: Optional[str] = None, factor: float = FACTOR) -> Tuple[Comparison, Optional[FixResult]]:
    """Compare ``artifact`` with ``reference`` layer by layer on real images; with ``fix_budget`` also write
    the fixed artifact. Writes debug.json/debug.md/error_per_layer.png to ``report_dir`` if given."""
    art = Path(artifact)
    art_info, engine_onnx = _artifact(art, artifact_onnx)
    if fix_budget is not None and images_dir is not None:
        raise UserError("--fix measures mIoU: give labelled images with --data ROOT --images N (not --images-dir)")
    if fix_budget is not None and engine_onnx is not None:
        raise UserError("--fix rewrites an ONNX: run it on the ONNX the engine was built from, then rebuild the engine")
    with tempfile.TemporaryDirectory() as tmp:
        ref = _reference(reference, checkpoint, art_info, Path(tmp))
        ref_info = read_info(ref)
        _check_pair(ref_info, art_info, ref, art)
        samples, raw, names = load_images(art_info, data, images, images_dir, split)
        raw = at_frame_size(raw, art_info)  # both runners see the frame a raw-frame artifact's graph receives
        log.info("comparing %s with %s on %d images (every tensor marked)", art, ref, len(raw))
        comparison = compare_layers(ref, art, raw, names, ref_info, art_info, engine_onnx=engine_onnx,
                                    factor=factor)
        fix = None
        if fix_budget is not None:
            out = Path(fix_out) if fix_out else art.with_name(f"{art.stem}_fixed.onnx")
            fix = fix_artifact(comparison, ref, art, art_info, samples, fix_budget, out,
                               Path(calibration) if calibration else None, Path(data) if data else None,
                               float_dtype)
    if report_dir is not None:
        write_report(comparison, Path(report_dir), fix.to_dict() if fix else None)
    return comparison, fix
