"""``pspnet-trt demo`` (``make demo``): the whole pipeline on a CPU, end to end, on ``r18_os8_camvid``.

train (short) -> export FP32 / FP16 -> calibrate + quantize INT8 -> validate each against PyTorch
-> CPU benchmark -> one table, plus JSON, markdown, plots and colour overlays in the report folder.
Where TensorRT and a GPU are present it also builds and validates the engines.

Each stage is skipped when its stamp says it already ran on the same inputs: content hashes of its
input files and folders, of the stage's settings and of this package's own source files. Every
artifact is written atomically, so Ctrl-C leaves no half-written file and the next run resumes at
the interrupted stage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

log = logging.getLogger(__name__)

MODEL = "r18_os8_camvid"
PACKAGE = Path(__file__).resolve().parent
SAMPLE = PACKAGE.parent / "samples" / "camvid"
# A trained r18_os8_camvid (sssegmentation format, fp16 weights): the demo fine-tunes it briefly instead of
# training from scratch, so that its overlays show a model that segments. Absent: train from scratch.
SHIPPED_CHECKPOINT = PACKAGE.parent / "samples" / f"{MODEL}_camvid.pth"
# Every training stage runs a fixed number of iterations, never a time budget: the log states the iterations the
# run really does, and every run trains the same model on a given CPU (so it meets the same gates).
FINETUNE_ITERS = 30  # fine-tuning from a start checkpoint: 124 s on a 2-core AVX2-only EPYC (FP32), ~1 min with bf16
FINETUNE_ITERS_FAST = 20  # ... in the --fast (CI) run
SCRATCH_ITERS = 100  # from scratch (--from-scratch); 95 iterations (an 8-minute budget) gave 22.4 % on 6 sample frames
# The shipped checkpoint ended its poly schedule near 1e-4; fine-tuning it at 1e-3 (20 iterations, 180x240 crops,
# batch 8, full CamVid) cost 1.0 mIoU point on 12 test images (56.56 -> 55.60), at 1e-4 nothing (56.54); with the
# fast run's 120x160 crops and batch 4 at 1e-3 the demo lost 8 points (48.66 -> 40.64 on its 6 images at 180x240).
FINETUNE_LR = 1e-4


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo run. ``fast`` is CI's reduced run (<= 5 min on 2 cores)."""

    data: Path
    work: Path
    report: Path
    fast: bool = False
    input_size: Tuple[int, int] = (360, 480)
    train_iters: int = SCRATCH_ITERS  # iterations of the training stage (fixed: a reproducible model)
    crop: Tuple[int, int] = (180, 240)
    batch_size: int = 8
    eval_images: int = 24
    calib_images: int = 16
    bench_iters: int = 10
    checkpoint: Optional[Path] = None  # a trained model: skip the training stage
    start_from: Optional[Path] = None  # fine-tune from these weights (train --load-from) instead of from scratch
    lr: Optional[float] = None  # None: the recipe's

    @classmethod
    def make(cls, data: Optional[str], work: str, report: str, fast: bool, checkpoint: Optional[str] = None,
             start_from: Optional[str] = None, from_scratch: bool = False) -> DemoConfig:
        from .errors import UserError

        root = Path(data) if data else SAMPLE
        ckpt = Path(checkpoint) if checkpoint else None
        start: Optional[Path] = None
        if start_from and not Path(start_from).is_file():
            raise UserError(f"--start-from {start_from} does not exist: pass a trained {MODEL} checkpoint, or "
                            "--from-scratch")
        if not from_scratch and not ckpt:
            start = Path(start_from) if start_from else (SHIPPED_CHECKPOINT if SHIPPED_CHECKPOINT.is_file() else None)
        finetune: Dict[str, Any] = {}
        if start is not None:
            finetune = dict(start_from=start, lr=FINETUNE_LR, train_iters=FINETUNE_ITERS)
            if fast:  # at the crop and batch measured above, not the from-scratch run's smaller ones
                finetune.update(train_iters=FINETUNE_ITERS_FAST, crop=(180, 240), batch_size=8)
        if fast:
            # fixed iterations, no time budget: CI gets the same model, and so the same gates, on every run
            # (a time-boxed 2-minute model differed per run: its INT8 delta was -0.04 in one CI run, -0.31 in another)
            settings: Dict[str, Any] = {"crop": (120, 160), "batch_size": 4, "train_iters": 200, **finetune}
            return cls(root, Path(work), Path(report), True, input_size=(180, 240), eval_images=6, calib_images=8,
                       bench_iters=3, checkpoint=ckpt, **settings)
        return cls(root, Path(work), Path(report), checkpoint=ckpt, **finetune)


def tree_hash(root: Path, patterns: Sequence[str] = ("*",)) -> str:
    """sha256 over the relative path and content of every file under ``root`` matching ``patterns``."""
    import hashlib

    from .files import sha256_file

    h = hashlib.sha256()
    files = sorted({p for pattern in patterns for p in root.rglob(pattern) if p.is_file() and "__pycache__" not in p.parts})
    for path in files:
        h.update(f"{path.relative_to(root).as_posix()}\0{sha256_file(path)}\n".encode())
    return h.hexdigest()


def source_hash(root: Path = PACKAGE) -> str:
    """Content hash of the package's own source files (code and the data files it reads)."""
    return tree_hash(root, ("*.py", "*.json"))


class Stages:
    """Runs a stage unless its stamp matches the content hash of its inputs and its outputs exist.

    A stage's key covers the content of every input file, every file inside an input folder (a
    dataset), its other settings, and the package's source files (``source_root``): changed data or
    changed code re-run the stage, a moved file with the same content does not."""

    def __init__(self, folder: Path, source_root: Path = PACKAGE) -> None:
        self.folder = folder
        self.source_root = source_root
        self._hashes: Dict[Path, str] = {}  # per run: a dataset folder is hashed once

    def content_key(self, value: Any) -> str:
        from .files import sha256_file

        if isinstance(value, Path) and value.is_file():
            return sha256_file(value)
        if isinstance(value, Path) and value.is_dir():
            path = value.resolve()
            if path not in self._hashes:
                self._hashes[path] = "tree:" + tree_hash(path)
            return self._hashes[path]
        return str(value)

    def run(self, name: str, inputs: Dict[str, Any], outputs: Sequence[Path], fn: Callable[[], Any]) -> Any:
        from .files import sha256_json, write_json

        if self.source_root not in self._hashes:
            self._hashes[self.source_root] = source_hash(self.source_root)
        key_data = {"source": self._hashes[self.source_root], **{k: self.content_key(v) for k, v in inputs.items()}}
        key = sha256_json(key_data)
        stamp = self.folder / f"{name}.json"
        if stamp.is_file() and all(Path(p).exists() for p in outputs):
            saved = json.loads(stamp.read_text())
            if saved.get("key") == key:
                log.info("[%s] up to date, reusing %s", name, ", ".join(str(p) for p in outputs))
                return saved.get("result")
        log.info("[%s] running", name)
        start = time.perf_counter()
        result = fn()
        write_json(stamp, {"key": key, "inputs": key_data, "seconds": round(time.perf_counter() - start, 1),
                           "result": result})
        return result


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job: train, export, quantize, validate, benchmark r18_os8_camvid")
    p.add_argument("--data", default=os.environ.get("CAMVID_ROOT") or None,
                   help="CamVid root (SegNet layout); default: $CAMVID_ROOT, else the committed sample")
    p.add_argument("--work", default="work/demo", help="artifacts (checkpoints, ONNX, engines)")
    p.add_argument("--report", default="reports/demo", help="report folder")
    p.add_argument("--fast", action="store_true", help="reduced run for CI (<= 5 min)")
    p.add_argument("--checkpoint", help="a trained r18_os8_camvid checkpoint: skip the short training")
    p.add_argument("--start-from", help=f"fine-tune from this checkpoint (default: {SHIPPED_CHECKPOINT.relative_to(PACKAGE.parent)}"
                                        " when present)")
    p.add_argument("--from-scratch", action="store_true", help="train from scratch, not from the shipped checkpoint")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    cfg = DemoConfig.make(args.data, args.work, args.report, args.fast, args.checkpoint,
                          start_from=args.start_from, from_scratch=args.from_scratch)
    rows = demo(cfg)
    print()
    print(format_table(rows))
    print(f"\nreport: {cfg.report / 'report.md'}")
    return 0 if all(r.get("passed", True) for r in rows) else 1


def demo(cfg: DemoConfig) -> List[Dict[str, Any]]:
    """Run every stage (or reuse it), write the report folder, return the table rows."""
    from .bench import measure
    from .data import open_dataset
    from .export import export_onnx
    from .files import write_json
    from .quant import CalibrationList, make_calibration_list, quantize_onnx
    from .runtime.ort import OrtBackend
    from .runtime.torch_backend import TorchBackend
    from .validate import validate, write_records
    from .zoo import get_spec

    spec = get_spec(MODEL)
    work, report_dir = cfg.work, cfg.report
    stages = Stages(work / "stamps")
    eval_set = open_dataset(spec.dataset, cfg.data, spec.eval_split)
    log.info("data: %s (%d train, %d %s images)", cfg.data, len(open_dataset(spec.dataset, cfg.data, spec.train_split)),
             len(eval_set), spec.eval_split)

    # 1. train: fine-tune the shipped checkpoint briefly, or (from scratch) sssegmentation's recipe at the CPU crop
    ckpt, train_summary = train_stage(cfg, stages)

    # 2. export FP32 / FP16 (labels output: HxW from the graph, in the dtype the engines of this TensorRT need)
    from .trt.plan import engine_plan

    no_engines, labels_dtype = engine_plan()
    model, info, onnx = export_stage(cfg, stages, ckpt, labels_dtype)

    # 2b. raw-frame FP16 artifact: uint8 BGR frames of the dataset's size in, labels at that size out
    frame = tuple(eval_set[0].image.shape[:2])
    frames_onnx = artifact_path(cfg, "fp16", frame)
    stages.run("export_fp16_bgr8", {"checkpoint": ckpt, "size": cfg.input_size, "frame": frame}, [frames_onnx],
               lambda: str(export_onnx(model, info.with_(input_format="bgr8", frame_size=frame), frames_onnx,
                                       precision="fp16")))

    # 3. INT8: calibration list from the training split, explicit Q/DQ
    calib = work / "calibration.txt"
    stages.run("quantize", {"onnx": onnx["fp32"], "data": cfg.data, "images": cfg.calib_images}, [onnx["int8"], calib],
               lambda: str(quantize_onnx(onnx["fp32"], CalibrationList.read(make_calibration_list(
                   MODEL, cfg.data, spec.train_split, cfg.calib_images, 0, out=calib, overwrite=True), cfg.data),
               onnx["int8"])))  # the demo's own list: a run with another image count replaces it

    # 4. TensorRT engines where TensorRT and a usable GPU exist
    engines = build_engines(onnx, work, no_engines)

    # 5. validate everything against PyTorch on the same images, and time each backend
    reference = TorchBackend(model, info)  # same deploy head as the artifacts: agreement shows numerics only
    artifacts = [OrtBackend(onnx[p], threads=2) for p in ("fp32", "fp16", "int8")] + engines
    artifacts.append(OrtBackend(frames_onnx, threads=2))  # the validator feeds it each image at its frame size
    report = validate(reference, artifacts, eval_set, limit=cfg.eval_images, report_dir=report_dir / "validation")
    write_records(report)  # each artifact's verdict beside it (NAME.validation.json, engine manifests)
    rows = report.rows
    for row, backend in zip(rows, [reference, *artifacts]):
        row["latency_ms"] = measure(backend, iterations=cfg.bench_iters, warmup=1).p50_ms
    write_overlays(OrtBackend(frames_onnx), eval_set, report_dir / "overlays", n=3)
    write_json(report_dir / "demo.json", {"train": train_summary, "rows": rows, "data": str(cfg.data),
                                          "fast": cfg.fast, "tensorrt": [str(e.path) for e in engines]})
    table = format_table(rows)
    from .files import atomic_open

    with atomic_open(report_dir / "report.md", "w") as f:
        trained = training_sentence(cfg, train_summary, rows[0].get("miou"))
        log.info("%s", trained)
        f.write(f"# pspnet-trt demo: {MODEL}\n\n{trained}; validated on {report.images} "
                f"{spec.eval_split} images at {cfg.input_size[0]}x{cfg.input_size[1]}.\n\n{table}\n\n"
                "Per-class IoU: validation/report.md, validation/iou_per_class.png. Overlays: overlays/.\n")
    return rows


def train_stage(cfg: DemoConfig, stages: Stages) -> Tuple[Path, Dict[str, Any]]:
    """Checkpoint ``work/r18_os8_camvid.pth`` and the training summary: copied from ``--checkpoint``, fine-tuned
    from ``cfg.start_from`` (its mIoU before the fine-tuning recorded as ``started_from``), or trained from scratch."""
    from .files import sha256_file
    from .train import TrainConfig, train

    work = cfg.work
    ckpt = work / f"{MODEL}.pth"

    def do_train() -> Dict[str, Any]:
        if cfg.checkpoint:
            copy_atomic(cfg.checkpoint, ckpt)
            return {"checkpoint": str(cfg.checkpoint)}
        started: Dict[str, Any] = {}
        if cfg.start_from:
            started = {"path": str(cfg.start_from), "sha256": sha256_file(cfg.start_from),
                       "miou": start_miou(cfg, cfg.start_from)}
        rate = {"lr": cfg.lr} if cfg.lr else {}  # else the recipe's
        log.info("training: %s, %d iterations of batch %d at %dx%d crops", f"fine-tuning {cfg.start_from}"
                 if cfg.start_from else "from scratch", cfg.train_iters, cfg.batch_size, *cfg.crop)
        clear_train_dir(work / "train", stages.folder / "train.json")
        last = train(TrainConfig(model=MODEL, data=cfg.data, work_dir=work / "train", iters=cfg.train_iters, **rate,
                                 crop=cfg.crop, batch_size=cfg.batch_size, eval_every=0, eval_limit=cfg.eval_images, workers=1,
                                 load_from=cfg.start_from))
        copy_atomic(last, ckpt)
        summary = dict(json.loads((work / "train" / "summary.json").read_text()))
        return {**summary, "started_from": started} if started else summary

    summary = stages.run("train", {"data": cfg.data, "iters": cfg.train_iters,
                                   "crop": cfg.crop, "lr": cfg.lr, "checkpoint": cfg.checkpoint or "-",
                                   "start_from": cfg.start_from or "-"}, [ckpt], do_train)
    return ckpt, summary


def clear_train_dir(train_dir: Path, stamp: Path) -> None:
    """The demo's training stage runs only when its inputs changed (``make demo DEMO_FAST=1``, then ``make demo``):
    the run its folder holds is then the demo's own earlier one (its stage ``stamp`` says the demo trained there),
    which ``train`` (one run per work dir) would refuse to write over, so it goes. Anything else (no stamp: a
    folder the demo did not train in) is left to ``train``, which names it."""
    import shutil

    if stamp.is_file() and (train_dir / "config.json").is_file():
        log.info("[train] the earlier demo training run in %s is replaced", train_dir)
        shutil.rmtree(train_dir)


def start_miou(cfg: DemoConfig, checkpoint: Path) -> float:
    """mIoU (points) of ``checkpoint`` in PyTorch on the images and at the size the demo validates with."""
    from .data import open_dataset
    from .deploy import DeployInfo
    from .export import zoo_model
    from .metrics import SegMetrics
    from .runtime.torch_backend import TorchBackend
    from .validate import predict_whole
    from .zoo import get_spec

    spec = get_spec(MODEL)
    backend = TorchBackend(zoo_model(MODEL, checkpoint), DeployInfo.from_spec(spec, input_size=cfg.input_size))
    data = open_dataset(spec.dataset, cfg.data, spec.eval_split)
    metrics = SegMetrics(spec.num_classes)
    for i in range(min(cfg.eval_images, len(data))):
        s = data[i]
        metrics.update(predict_whole(backend, s.image, s.label.shape[:2]), s.label)
    return round(100 * metrics.miou, 2)


def training_sentence(cfg: DemoConfig, summary: Dict[str, Any], miou: Optional[float]) -> str:
    """What the training stage did, for the report: which checkpoint it started from and what the minutes did."""
    if cfg.checkpoint:
        return f"Checkpoint {cfg.checkpoint} (no training) on {cfg.data}"
    done = f"{summary.get('iterations')} iterations ({summary.get('seconds')} s) on {cfg.data}"
    start = summary.get("started_from")
    if not start:
        return f"Trained from scratch: {done}"
    after = f"{miou:.2f} % ({miou - start['miou']:+.2f} points)" if miou is not None else "see the table"
    return (f"Started from {start['path']} (sha256 {start['sha256'][:12]}, {start['miou']:.2f} % mIoU in PyTorch on "
            f"the images below); fine-tuned {done} at lr {cfg.lr}: {after}")


def export_stage(cfg: DemoConfig, stages: Stages, ckpt: Path, labels_dtype: str
                 ) -> Tuple[Any, Any, Dict[str, Path]]:
    """(model, DeployInfo, ONNX paths): FP32 and FP16 graphs that carry ``ckpt``'s sha256; INT8's path for later."""
    from .deploy import DeployInfo
    from .export import export_onnx, zoo_model
    from .files import sha256_file
    from .zoo import get_spec

    model = zoo_model(MODEL, ckpt)
    info = DeployInfo.from_spec(get_spec(MODEL), input_size=cfg.input_size, output="labels",
                                checkpoint_sha256=sha256_file(ckpt))
    onnx = {p: artifact_path(cfg, p) for p in ("fp32", "fp16", "int8")}
    for precision in ("fp32", "fp16"):
        stages.run(f"export_{precision}", {"checkpoint": ckpt, "size": cfg.input_size, "labels": labels_dtype},
                   [onnx[precision]],
                   lambda p=precision: str(export_onnx(model, info, onnx[p], precision=p, labels_dtype=labels_dtype)))
    return model, info, onnx


def artifact_path(cfg: DemoConfig, precision: str, frame: Optional[Sequence[int]] = None, suffix: str = ".onnx") -> Path:
    """``cfg.work/<model>_<H>x<W>[_frame<FH>x<FW>]_<precision><suffix>``: the one naming scheme of every artifact."""
    from .artifacts import artifact_name

    return cfg.work / artifact_name(MODEL, precision, cfg.input_size, frame_size=frame, suffix=suffix)


def copy_atomic(src: Path, dst: Path) -> None:
    import shutil

    from .files import atomic_path

    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def build_engines(onnx: Dict[str, Path], work: Path, no_engines: Optional[str] = "") -> List[Any]:
    """FP16 and INT8 engines when TensorRT and a usable GPU are present; nothing, with one log line, otherwise.

    ``no_engines``: :func:`engine_plan`'s reason (None: build); "" asks :func:`engine_plan` here."""
    if no_engines == "":
        from .trt.plan import engine_plan

        no_engines = engine_plan()[0]
    if no_engines:
        log.info("engines not built: %s (CPU-only machine; see docs/gpu.md)", no_engines)
        return []
    from .runtime.tensorrt import TensorRTBackend
    from .trt import BuildConfig, build_engine

    engines = []
    for precision in ("fp16", "int8"):
        path = build_engine(onnx[precision], onnx[precision].with_suffix(".engine"),
                            BuildConfig(precision=precision, timing_cache=str(work / "timing.cache")))
        engines.append(TensorRTBackend(path))
    return engines


def write_overlays(backend: Any, dataset: Any, folder: Path, n: int = 3) -> None:
    """image | ground truth | prediction, side by side, for the first ``n`` images."""
    import numpy as np

    from .preprocess import colorize, write_image
    from .validate import predict_whole

    palette = backend.info.palette
    for i in range(min(n, len(dataset))):
        s = dataset[i]
        pred = predict_whole(backend, s.image, s.label.shape[:2])
        write_image(folder / f"{s.name}.png", np.concatenate([s.image, colorize(s.label, palette),
                                                              colorize(pred, palette)], axis=1))


def format_table(rows: Sequence[Dict[str, Any]]) -> str:
    """One markdown table: backend, precision, mIoU, delta vs PyTorch, agreement, latency p50, size."""
    from .reporting import fmt, markdown_table

    return markdown_table(
        ["backend", "precision", "mIoU %", "Δ vs PyTorch", "agreement %", "latency p50 ms", "size MB", "gate"],
        [[r["backend"], r["precision"], fmt(r.get("miou"), ".2f"), fmt(r.get("delta"), "+.2f"),
          fmt(r.get("agreement"), ".3f"), fmt(r.get("latency_ms"), ".1f"), fmt(r.get("size_mb"), ".1f"),
          "-" if "passed" not in r else ("pass" if r["passed"] else "FAIL")] for r in rows])
