"""The validation loop and the gate: PyTorch and every artifact on the same images, in one pass."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..artifacts import is_onnx
from ..data import SegDataset
from ..deploy import DeployInfo
from ..metrics import Agreement, SegMetrics
from ..preprocess import logits_to_labels
from ..runtime.backend import Backend
from ..zoo import IGNORE_INDEX
from .gate import agreement_floor, gate
from .inference import (
    MODES,
    ValidationError,
    check_mode,
    default_stride,
    describe,
    predict_whole,
    slide_image,
    slide_logits,
)

log = logging.getLogger(__name__)


@dataclass
class BackendResult:
    """What one backend scored during a run."""

    backend: Backend
    label: str
    metrics: SegMetrics
    agreement: Agreement = field(default_factory=Agreement)
    seconds: float = 0.0  # preprocessing + inference + resize to the label size, summed over images
    images: int = 0
    path: Optional[str] = None

    @property
    def precision(self) -> str:
        return self.backend.info.precision

    def row(self, reference: BackendResult, tolerance: float, is_reference: bool,
            min_agreement: Optional[float] = None) -> Dict[str, Any]:
        miou = 100 * self.metrics.miou
        delta = miou - 100 * reference.metrics.miou
        info, ref = self.backend.info, reference.backend.info
        row: Dict[str, Any] = {
            "backend": self.label, "precision": self.precision, "path": self.path, "output": info.output,
            "miou": miou, "pixel_accuracy": 100 * self.metrics.pixel_accuracy,
            "invalid_pixels": self.metrics.invalid_pixels,  # predicted labels outside 0..C-1, any pixel
            "delta": None if is_reference else delta,
            "agreement": None if is_reference else 100 * self.agreement.value,
            "images_per_s": self.images / self.seconds if self.seconds else None,
            "size_mb": Path(self.path).stat().st_size / 1e6 if self.path and Path(self.path).is_file() else None,
            "checkpoint_sha256": info.checkpoint_sha256,
            "iou": self.metrics.summary(info.class_names)["iou"],
            "numerics": getattr(self.backend, "numerics", None),  # how an INT8 ONNX ran (fake-quant: CPU-independent)
        }
        if not is_reference:
            # the gate (.gate): mIoU within the tolerance, agreement with its PyTorch reference above the floor of
            # its precision, no label outside 0..C-1; NaN (nothing scored) never passes
            floor = agreement_floor(self.precision) if min_agreement is None else min_agreement
            verdict = gate(self.precision, 100 * self.agreement.value, self.metrics.invalid_pixels, delta, tolerance,
                           floor)
            row["passed"], row["why"], row["agreement_floor"] = verdict.passed, verdict.why, floor
            # same weights as PyTorch: True/False, unknown: None
            known = info.checkpoint_sha256 and ref.checkpoint_sha256
            row["same_checkpoint"] = (info.checkpoint_sha256 == ref.checkpoint_sha256) if known else None
        return row


@dataclass
class ValidationReport:
    """Rows: PyTorch first, then one per artifact (``passed`` is set on artifacts only)."""

    rows: List[Dict[str, Any]]
    tolerance: float
    images: int
    mode: str
    class_names: Tuple[str, ...]
    seconds: float
    context: Dict[str, Any] = field(default_factory=dict)  # model, dataset, split, input size, stride, ...

    @property
    def gated(self) -> bool:
        """False when no artifact was compared (PyTorch evaluated alone): nothing passed or failed."""
        return any("passed" in r for r in self.rows)

    @property
    def passed(self) -> bool:
        """Every artifact passed the gate (True when none was given: see :attr:`gated`)."""
        return all(r.get("passed", True) for r in self.rows)

    @property
    def partial(self) -> bool:
        """Fewer images than a full validation needs (:func:`pspnet_trt.records.full_minimum` of the split): the
        gate still decides the exit code, but the records say "partial" and ``Segmenter.open`` keeps warning."""
        from ..records import full_minimum

        return self.images < full_minimum(self.context.get("split_images"))

    @property
    def coverage(self) -> str:
        """``N of the M split images`` (``partial`` appended when below the minimum)."""
        of = f" of the {self.context['split_images']}" if self.context.get("split_images") is not None else ""
        return f"{self.images}{of} {self.context.get('split') or ''} images".replace("  ", " ") + (
            " (partial)" if self.partial else "")

    @property
    def verdict(self) -> str:
        if not self.gated:
            return "evaluation only, no artifact gated"
        if not self.passed:
            return f"FAIL ({', '.join(self.failed)})"
        return f"PASS (partial: {self.coverage.replace(' (partial)', '')})" if self.partial else "PASS"

    @property
    def failed(self) -> List[str]:
        """Names of the artifacts below the gate."""
        return [r["backend"] for r in self.rows if r.get("passed") is False]

    def record(self, row: Dict[str, Any]) -> Dict[str, Any]:
        """The validation record of an artifact's ``row`` (what :func:`write_records` stores with the artifact)."""
        from ..deploy import package_version
        from ..records import now

        c = self.context
        return _finite({
            "kind": "miou", "passed": row["passed"], "date": now(), "model": c.get("model"),
            "dataset": c.get("dataset"), "split": c.get("split"), "data_root": c.get("data_root"),
            "images": self.images, "split_images": c.get("split_images"), "partial": self.partial,
            "mode": self.mode, "input_size": c.get("input_size"), "miou": row["miou"],
            "reference_miou": self.rows[0]["miou"], "delta": row["delta"], "agreement": row["agreement"],
            "invalid_pixels": row["invalid_pixels"], "tolerance": self.tolerance,
            "agreement_floor": row["agreement_floor"], "why": row["why"],
            "reference_checkpoint_sha256": c.get("checkpoint_sha256"), "same_checkpoint": row.get("same_checkpoint"),
            "report": c.get("report"), "package_version": package_version(),
        })

    def to_dict(self) -> Dict[str, Any]:
        return _finite({"passed": self.passed if self.gated else None, "gated": self.gated, "verdict": self.verdict,
                        "tolerance_miou_points": self.tolerance, "images": self.images,
                        "mode": self.mode, "seconds": self.seconds, **self.context, "class_names": list(self.class_names),
                        "backends": self.rows})


def _finite(x: Any) -> Any:
    """NaN/inf -> None, so that report.json is strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def check_comparable(reference: Backend, artifacts: Sequence[Backend]) -> None:
    """Every artifact must come from the reference's zoo model, with its class count, input size and
    normalisation; otherwise the comparison would be meaningless (ValidationError naming the file)."""
    for a in artifacts:
        check_info(reference.info, a.info, describe(a))


def check_info(ref: DeployInfo, info: DeployInfo, where: str) -> None:
    """:func:`check_comparable` for one artifact's metadata ``info`` (``where`` names it in the message)."""
    if info.model != ref.model:
        raise ValidationError(f"{where} was exported from zoo model {info.model!r}, but the reference is "
                              f"{ref.model!r}: pass --model {info.model} (or the matching artifact)")
    if info.num_classes != ref.num_classes:
        raise ValidationError(f"{where} predicts {info.num_classes} classes but the model has {ref.num_classes}: "
                              "it was exported from another model (check --model / --num-classes)")
    if tuple(info.input_size) != tuple(ref.input_size):
        raise ValidationError(f"{where} takes {info.input_size[0]}x{info.input_size[1]} inputs but the reference "
                              f"takes {ref.input_size[0]}x{ref.input_size[1]}: validate artifacts of one input size "
                              "per run (re-export, or run them separately)")
    if info.normalization != ref.normalization:
        raise ValidationError(f"{where} normalises inputs differently ({info.normalization}) from the model "
                              f"({ref.normalization}): it was exported from another zoo entry")


def _names(artifacts: Sequence[Backend], labels: Optional[Sequence[str]]) -> List[str]:
    if labels is not None:
        if len(labels) != len(artifacts):
            raise ValueError(f"{len(labels)} labels for {len(artifacts)} artifacts")
        names = [str(n) for n in labels]
    else:
        names = [_label(a) for a in artifacts]
    if len(set(names)) < len(names) and labels is None:  # same file name in two folders: use the paths
        names = [f"{a.name} {a.info.precision} ({getattr(a, 'path', i)})" for i, a in enumerate(artifacts)]
    if "pytorch" in names or len(set(names)) < len(names):
        raise ValueError(f"artifact labels must be unique and not 'pytorch': {names}")
    return names


def _label(backend: Backend) -> str:
    path = getattr(backend, "path", None)
    return f"{backend.name} {backend.info.precision} ({Path(path).name})" if path else backend.name


def validate(reference: Backend, artifacts: Sequence[Backend], dataset: SegDataset, *,
             labels: Optional[Sequence[str]] = None, limit: Optional[int] = None, tolerance: float = 0.5,
             min_agreement: Optional[float] = None,
             mode: str = "whole", fit: Optional[Tuple[int, int]] = None, stride: Optional[Tuple[int, int]] = None,
             report_dir: Optional[Union[str, Path]] = None, progress: bool = True) -> ValidationReport:
    """Score ``reference`` (PyTorch) and each artifact on the first ``limit`` images of ``dataset``.

    Each image is read once, preprocessed once (all backends share input size and normalisation,
    see :func:`check_comparable`) and fed to every backend. An artifact passes the gate (:func:`.gate.gate`) when
    its mIoU is at most ``tolerance`` mIoU points below the reference's, its labels agree with its own PyTorch
    reference (:func:`reference_for`) on at least ``min_agreement`` % of the pixels (default: the floor of its
    precision, :data:`.gate.AGREEMENT_FLOORS`) and it predicts no label outside the class range. ``labels`` names the artifacts in the
    report (default: backend, precision and file name); ``fit`` is the keep-ratio test resize of
    slide mode (the zoo entry's ``eval_resize``), ``stride`` its window step (default 2/3 of the
    input size). With ``report_dir``, report.json, report.md and iou_per_class.png are written there.
    """
    from tqdm import tqdm

    if mode not in MODES:
        raise ValidationError(f"mode must be one of {MODES}, got {mode!r}")
    if tolerance < 0 or not math.isfinite(tolerance):
        raise ValidationError(f"tolerance must be a finite number of mIoU points >= 0, got {tolerance}")
    if min_agreement is not None and not 0 <= min_agreement <= 100:
        raise ValidationError(f"min_agreement must be a % of pixels between 0 and 100, got {min_agreement}")
    if limit is not None and limit < 1:
        raise ValidationError(f"limit must be at least 1 image, got {limit}")
    for backend in (reference, *artifacts):
        check_mode(backend, mode)
    check_comparable(reference, artifacts)
    if mode == "slide":
        stride = tuple(stride or default_stride(reference.info.input_size))  # type: ignore[assignment]
    num_classes = reference.info.num_classes
    results = [BackendResult(reference, "pytorch", SegMetrics(num_classes))]
    results += [BackendResult(a, n, SegMetrics(num_classes), path=str(getattr(a, "path", "")) or None)
                for a, n in zip(artifacts, _names(artifacts, labels))]
    references = {reference_key(a.info, mode): reference_for(reference, a.info, mode) for a in artifacts}
    n_images = len(dataset) if limit is None else min(limit, len(dataset))
    labelled = 0
    read_s = 0.0
    start = time.perf_counter()
    for i in tqdm(range(n_images), desc="validate", unit="img", disable=not progress):
        t = time.perf_counter()
        sample = dataset[i]
        read_s += time.perf_counter() - t
        label_hw = sample.label.shape[:2]
        labelled += int((sample.label != IGNORE_INDEX).sum())
        # whole: each backend gets the image in its own input format, preprocessed once per format and size
        shared: Dict[Any, Any] = {}
        t = time.perf_counter()
        crops = slide_image(sample.image, fit, reference) if mode == "slide" else None
        pre_s = time.perf_counter() - t
        ref_preds: Dict[Any, np.ndarray] = {}  # the prediction of each reference kind (reference_key) on this image
        for k, r in enumerate(results):
            t = time.perf_counter()
            if crops is None:
                pred = predict_whole(r.backend, sample.image, label_hw, shared)
            else:
                pred = logits_to_labels(slide_logits(r.backend, crops, stride), label_hw)  # type: ignore[arg-type]
            r.seconds += pre_s + time.perf_counter() - t
            r.images += 1
            r.metrics.update(pred, sample.label)
            if k == 0:
                ref_preds[reference_key(reference.info, mode)] = pred
                continue
            key = reference_key(r.backend.info, mode)
            if key not in ref_preds:  # PyTorch computing what this artifact's graph computes, fed as it is
                ref_preds[key] = predict_whole(references[key], sample.image, label_hw, shared)
            r.agreement.update(pred, ref_preds[key])  # every pixel, labelled or not: a numerics check
    if labelled == 0:
        raise ValidationError(f"the {n_images} images of {dataset!r} have no labelled pixel (all {IGNORE_INDEX}): "
                              "wrong dataset layout or label files for this model?")
    rows = [r.row(results[0], tolerance, i == 0, min_agreement) for i, r in enumerate(results)]
    h, w = reference.info.input_size
    context = {
        "model": reference.info.model, "checkpoint_sha256": reference.info.checkpoint_sha256,
        "dataset": getattr(dataset, "kind", None), "data_root": str(getattr(dataset, "root", "")) or None,
        "split": getattr(dataset, "split", None), "input_size": [h, w],
        "stride": list(stride) if mode == "slide" and stride else None,
        "test_resize": list(fit) if mode == "slide" and fit else None,
        "split_images": len(dataset),  # what the images cover: a record under the minimum is partial
        "read_seconds": round(read_s, 2), "labelled_pixels": labelled,
        "report": str(report_dir) if report_dir is not None else None,
    }
    report = ValidationReport(rows, tolerance, n_images, mode, reference.info.class_names,
                              round(time.perf_counter() - start, 2), context)
    if not artifacts:
        log.info("pytorch: mIoU %.2f (evaluation only, no artifact gated)", rows[0]["miou"])
    for row in rows[1:]:
        log.log(logging.INFO if row["passed"] else logging.ERROR, "%s: mIoU %.2f (%+.2f vs PyTorch %.2f), agreement "
                "%.3f %% (floor %g %%) -> %s", row["backend"], row["miou"], row["delta"], rows[0]["miou"],
                row["agreement"], row["agreement_floor"], "pass" if row["passed"] else f"FAIL: {'; '.join(row['why'])}")
        if row["invalid_pixels"]:
            log.error("%s predicted %d pixels outside the class range 0..%d: it fails the gate whatever its mIoU",
                      row["backend"], row["invalid_pixels"], num_classes - 1)
        if row["same_checkpoint"] is False:
            log.warning("%s was exported from another checkpoint (sha256 %s...) than the reference's (%s...)",
                        row["backend"], str(row["checkpoint_sha256"])[:12], str(reference.info.checkpoint_sha256)[:12])
    if report_dir is not None:
        from .report import write_report

        write_report(report, Path(report_dir))
    return report


def open_artifacts(artifacts: Sequence[Union[str, Path]], device: str = "auto",
                   threads: Optional[int] = None) -> List[Backend]:
    """Backends for .onnx / engine paths (``threads``: ONNX Runtime CPU threads); all closed again on an error."""
    from ..runtime import open_backend

    opened: List[Backend] = []
    try:
        for p in artifacts:
            cpu_threads: Dict[str, Any] = {"threads": threads} if threads and is_onnx(p) else {}
            opened.append(open_backend(p, device=device, **cpu_threads))
    except BaseException:
        for a in opened:
            a.close()
        raise
    return opened


def reference_output(artifacts: Sequence[Backend], mode: str = "whole") -> str:
    """The output of the PyTorch row of a report (its mIoU): ``labels`` (argmax at the input size, as the
    artifacts take it) when every artifact has labels taken at the input size (labels only, and not a raw-frame
    graph that upsamples its scores to the frame) and mode is whole, else ``logits``. Each artifact's agreement is
    computed against its own reference (:func:`reference_for`), whatever this row's output."""
    labels_only = bool(artifacts) and all(reference_key(a.info, mode)[-1] == "labels" for a in artifacts)
    return "labels" if labels_only and mode == "whole" else "logits"


def reference_key(info: DeployInfo, mode: str = "whole") -> Tuple[Any, ...]:
    """What the PyTorch reference of an artifact described by ``info`` depends on: its input format and frame
    size, and where its graph takes the argmax (``logits``: scores brought to the image bilinearly by the host,
    or to the frame inside a bgr8 graph with frame_upsample logits; ``labels``: argmax at the input size)."""
    if mode == "slide":
        return ("slide",)
    upsample = "logits" if "logits" in info.output_names else "labels"
    if info.raw_frames:
        upsample = info.frame_upsample
    return (info.input_format, info.input_size, info.frame_size, upsample)


def reference_for(reference: Backend, info: DeployInfo, mode: str = "whole") -> Backend:
    """The reference of an artifact described by ``info``: ``reference``'s PyTorch model computing what the
    artifact's graph computes, fed the artifact's own input
    (:meth:`~pspnet_trt.runtime.torch_backend.TorchBackend.reference_of`; also what ``check-export`` compares
    with). Slide mode, or a reference that is not a PyTorch model: ``reference`` itself."""
    from ..runtime.torch_backend import TorchBackend

    if mode == "slide" or not isinstance(reference, TorchBackend):
        return reference
    if reference_key(reference.info, mode) == reference_key(info, mode):
        return reference
    return reference.reference_of(info)


def open_reference(model: str, artifacts: Sequence[Backend], *, checkpoint: Optional[Union[str, Path]] = None,
                   device: str = "auto", input_size: Optional[Tuple[int, int]] = None,
                   num_classes: Optional[int] = None, threads: Optional[int] = None, mode: str = "whole") -> Backend:
    """The PyTorch model ``model`` as the reference of ``artifacts``: each is checked against the zoo entry
    (model, classes, input size, normalisation, mode) before the checkpoint is loaded; then the reference is
    built at their input size (or ``input_size``, or the deploy size) with :func:`reference_output`."""
    from ..checkpoints import checkpoint_classes
    from ..runtime.torch_backend import TorchBackend
    from ..zoo import get_spec

    spec = get_spec(model)
    size = input_size or (tuple(artifacts[0].info.input_size) if artifacts else None)
    classes = checkpoint_classes(checkpoint) if checkpoint is not None else None  # what a trained checkpoint predicts
    expected = DeployInfo.from_spec(spec, input_size=size, num_classes=num_classes,  # type: ignore[arg-type]
                                    classes=classes)
    for a in artifacts:  # before the (possibly downloaded) checkpoint is loaded
        check_info(expected, a.info, describe(a))
        check_mode(a, mode)
    return TorchBackend.from_zoo(model, checkpoint=checkpoint, device=device, input_size=size,  # type: ignore[arg-type]
                                 output=reference_output(artifacts, mode), num_classes=num_classes, threads=threads)


def write_records(report: ValidationReport) -> List[Path]:
    """Store every artifact's verdict with the artifact (see :mod:`pspnet_trt.records`): an engine's manifest
    gets a ``validation`` block, an ONNX file a ``NAME.validation.json`` beside it. Rows without a file are skipped."""
    from ..records import fingerprint, write_record

    written = []
    for row in report.rows[1:]:
        if row.get("path") and Path(row["path"]).is_file():
            try:
                written.append(write_record(row["path"], {**report.record(row), **fingerprint(row["path"])}))
            except OSError as e:  # e.g. a read-only folder: the report and the exit code still say it
                log.warning("could not record the verdict of %s (%s)", row["path"], e)
                continue
            log.info("validation record: %s", written[-1])
    return written


def validate_artifacts(model: str, artifacts: Sequence[Union[str, Path]], data: Union[str, Path], *,
                       split: Optional[str] = None, checkpoint: Optional[Union[str, Path]] = None,
                       device: str = "auto", input_size: Optional[Tuple[int, int]] = None,
                       num_classes: Optional[int] = None, threads: Optional[int] = None, record: bool = True,
                       **kwargs: Any) -> ValidationReport:
    """Open everything from names and paths, then :func:`validate` (what ``pspnet-trt validate`` runs).

    ``model`` is a zoo name, ``artifacts`` are .onnx / engine files, ``data`` is the dataset root in
    the zoo entry's layout. The PyTorch reference is built at the artifacts' input size (or
    ``input_size``, or the entry's deploy size when no artifact is given) with a labels output when
    every artifact has labels only (so both take the argmax at the same resolution) and logits
    otherwise. ``threads``: CPU threads of ONNX Runtime and PyTorch. ``record``: store each artifact's verdict
    with it (:func:`write_records`). Other keywords go to :func:`validate`.
    """
    from ..data import check_classes, dataset_for_spec, is_folder_dataset
    from ..zoo import get_spec

    spec = get_spec(model)
    dataset = dataset_for_spec(spec, data, split)  # bad --data / --split stop before any model is loaded
    opened: List[Backend] = []
    try:
        opened += open_artifacts(artifacts, device, threads)
        reference = open_reference(model, opened, checkpoint=checkpoint, device=device, input_size=input_size,
                                   num_classes=num_classes, threads=threads, mode=kwargs.get("mode", "whole"))
        if is_folder_dataset(data):  # its masks are read against its own class list: it must be the model's
            check_classes(dataset, reference.info.num_classes, reference.info.class_names)
        kwargs.setdefault("fit", spec.eval_resize)
        report = validate(reference, opened, dataset, **kwargs)
        if record:
            write_records(report)
        return report
    finally:
        for a in opened:
            a.close()
