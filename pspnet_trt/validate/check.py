"""The check after an engine build: with a dataset, :func:`~.core.validate_artifacts` (mIoU gate); without
one, labels agreement with the PyTorch model on a folder of images, against the floor of its precision; both
decide by the one rule of :mod:`.gate`.

    ok = check_artifact("r18_os8_camvid", "engines/m_fp16.engine", checkpoint="m.pth")            # samples/
    ok = check_artifact("r18_os8_camvid", "engines/m_fp16.engine", data="/data/camvid", limit=20)  # mIoU gate

Both compare like with like (:func:`~.core.reference_output`: a labels artifact against a labels
reference) and store the verdict with the artifact (:mod:`pspnet_trt.records`). Plain functions over
:class:`~pspnet_trt.runtime.backend.Backend`, so an ONNX file checks the same way as an engine.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ..errors import UserError
from ..metrics import Agreement
from ..runtime.backend import Backend
from ..runtime.inference import at_frame_size
from .core import check_comparable, open_artifacts, open_reference, reference_for, validate_artifacts
from .gate import agreement_floor, gate
from .inference import ValidationError, predict_whole

log = logging.getLogger(__name__)

SAMPLES = Path(__file__).resolve().parents[2] / "samples"  # the repository's committed sample images
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass
class AgreementCheck:
    artifact: str
    images: int
    images_dir: str
    agreement: float  # % of pixels (every pixel) with PyTorch's label
    threshold: float
    invalid_pixels: int  # labels outside 0..C-1 (any fails)
    passed: bool
    why: List[str] = field(default_factory=list)  # the rules it broke (.gate)

    def record(self) -> Dict[str, Any]:
        from ..records import now

        return {"kind": "agreement", **asdict(self), "date": now()}


def sample_images(folder: Union[str, Path], limit: Optional[int] = None) -> List[Tuple[str, np.ndarray]]:
    """Colour images under ``folder`` (recursively, sorted; single-channel files such as label maps are
    skipped), the first ``limit`` of them."""
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"--images-dir {root} is not a folder of images")
    found: List[Tuple[str, np.ndarray]] = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is not None and image.ndim == 3 and image.shape[2] == 3:
            found.append((str(path), image))
            if limit is not None and len(found) >= limit:
                break
    if not found:
        raise UserError(f"no colour images (.jpg/.png) under {root}: pass --images-dir with a few of your own")
    return found


def check_agreement(reference: Backend, artifact: Backend, images: Sequence[np.ndarray], threshold: float,
                    images_dir: str = "") -> AgreementCheck:
    """Labels of ``artifact`` vs its PyTorch reference (:func:`~.core.reference_for`: ``reference``'s model
    computing what the artifact's graph computes) on ``images`` (whole-image inference, compared at each image's
    size, every pixel); the verdict is :func:`~.gate.gate`'s with ``threshold`` as the agreement floor."""
    check_comparable(reference, [artifact])
    if not images:
        raise ValidationError("no images to check the artifact on")
    agreement = Agreement()
    invalid = 0
    num_classes = reference.info.num_classes
    like = reference_for(reference, artifact.info)
    for image in at_frame_size(images, artifact.info):  # each through the one door, in its own input format
        hw = image.shape[:2]
        ref, out = predict_whole(like, image, hw), predict_whole(artifact, image, hw)
        invalid += int(np.count_nonzero((out < 0) | (out >= num_classes)))
        agreement.update(out, ref)
    value = 100 * agreement.value
    verdict = gate(artifact.info.precision, value, invalid, floor=threshold)
    return AgreementCheck(str(getattr(artifact, "path", artifact.name)), len(images), images_dir, value, threshold,
                          invalid, verdict.passed, verdict.why)


def check_artifact(model: str, artifact: Union[str, Path], *, checkpoint: Optional[Union[str, Path]] = None,
                   data: Optional[Union[str, Path]] = None, images_dir: Optional[Union[str, Path]] = None,
                   limit: int = 20, device: str = "auto", threshold: Optional[float] = None,
                   report_dir: Optional[Union[str, Path]] = None) -> bool:
    """Check a freshly built ``artifact`` against PyTorch and record the verdict with it; True if it passed.

    With ``data``: the mIoU gate of ``validate`` on the first ``limit`` images of the evaluation split (report
    in ``report_dir``). Without: labels agreement on up to ``limit`` images of ``images_dir`` (default: the
    repository's ``samples/``) against ``threshold`` (default: :func:`~.gate.agreement_floor` of its precision).
    """
    from ..records import fingerprint, validate_advice, write_record

    if data:
        report = validate_artifacts(model, [artifact], data, checkpoint=checkpoint, device=device, limit=limit,
                                    report_dir=report_dir)
        if report.passed and report.partial:
            log.info("%s passed on %s, a partial validation; for a full one, %s", artifact, report.coverage,
                     validate_advice(artifact))
        return report.passed

    folder = Path(images_dir) if images_dir else SAMPLES
    if not images_dir and not folder.is_dir():
        raise UserError("no --data and no samples/ folder (an installed package has none): pass --images-dir "
                        "FOLDER with a few images, or --data ROOT")
    images = sample_images(folder, limit)
    (opened,) = open_artifacts([artifact], device)
    try:
        reference = open_reference(model, [opened], checkpoint=checkpoint, device=device)
        result = check_agreement(reference, opened, [im for _, im in images],
                                 agreement_floor(opened.info.precision) if threshold is None else threshold,
                                 str(folder))
    finally:
        opened.close()
    write_record(artifact, {**result.record(), **fingerprint(artifact)})
    level = logging.INFO if result.passed else logging.ERROR
    log.log(level, "%s: labels agree with PyTorch on %.3f %% of the pixels of %d images in %s (threshold %.2f %%%s) "
            "-> %s", artifact, result.agreement, result.images, folder, result.threshold,
            f", {result.invalid_pixels} labels out of range" if result.invalid_pixels else "",
            "pass" if result.passed else "FAIL")
    log.info("no --data: this checked agreement only; to validate the mIoU, %s", validate_advice(artifact))
    return result.passed
