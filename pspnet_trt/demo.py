"""``pspnet-trt demo`` (``make demo``): the whole pipeline on a CPU, end to end, on ``r18_os8_camvid``.

train (short) -> export FP32 / FP16 -> calibrate + quantize INT8 -> validate each against PyTorch
-> CPU benchmark -> one table, plus JSON, markdown, plots and colour overlays in the report folder.
Where TensorRT and a GPU are present it also builds and validates the engines.

Each stage is skipped when its stamp says it already ran on the same inputs (hashes of the input
files and the stage's settings); every artifact is written atomically, so Ctrl-C leaves no
half-written file and the next run resumes at the interrupted stage.
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
SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "camvid"


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo run. ``fast`` is CI's reduced run (<= 5 min on 2 cores)."""

    data: Path
    work: Path
    report: Path
    fast: bool = False
    input_size: Tuple[int, int] = (360, 480)
    train_minutes: float = 8.0  # time budget of the training stage (the poly decay follows it) ...
    train_iters: Optional[int] = None  # ... or a fixed number of iterations: a bit-reproducible model
    crop: Tuple[int, int] = (180, 240)
    batch_size: int = 8
    eval_images: int = 24
    calib_images: int = 16
    bench_iters: int = 10
    checkpoint: Optional[Path] = None  # a trained model: skip the training stage

    @classmethod
    def make(cls, data: Optional[str], work: str, report: str, fast: bool, checkpoint: Optional[str] = None
             ) -> DemoConfig:
        root = Path(data) if data else SAMPLE
        ckpt = Path(checkpoint) if checkpoint else None
        if fast:
            # fixed iterations, no time budget: CI gets the same model, and so the same gates, on every run
            # (a time-boxed 2-minute model differed per run: its INT8 delta was -0.04 in one CI run, -0.31 in another)
            return cls(root, Path(work), Path(report), True, input_size=(180, 240), train_iters=200, crop=(120, 160),
                       batch_size=4, eval_images=6, calib_images=8, bench_iters=3, checkpoint=ckpt)
        return cls(root, Path(work), Path(report), checkpoint=ckpt)


class Stages:
    """Runs a stage unless its stamp matches the hash of its inputs and its outputs exist."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def run(self, name: str, inputs: Dict[str, Any], outputs: Sequence[Path], fn: Callable[[], Any]) -> Any:
        from . import __version__
        from .files import sha256_file, sha256_json, write_json

        key_data = {"version": __version__, **{k: (sha256_file(v) if isinstance(v, Path) and v.is_file() else str(v))
                                               for k, v in inputs.items()}}
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
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    cfg = DemoConfig.make(args.data, args.work, args.report, args.fast, args.checkpoint)
    rows = demo(cfg)
    print()
    print(format_table(rows))
    print(f"\nreport: {cfg.report / 'report.md'}")
    return 0 if all(r.get("passed", True) for r in rows) else 1


def demo(cfg: DemoConfig) -> List[Dict[str, Any]]:
    """Run every stage (or reuse it), write the report folder, return the table rows."""
    from .bench import measure
    from .data import open_dataset
    from .deploy import DeployInfo
    from .export import export_onnx, zoo_model
    from .files import write_json
    from .quant import CalibrationList, make_calibration_list, quantize_onnx
    from .runtime.ort import OrtBackend
    from .runtime.torch_backend import TorchBackend
    from .train import TrainConfig, train
    from .validate import validate
    from .zoo import get_spec

    spec = get_spec(MODEL)
    work, report_dir = cfg.work, cfg.report
    stages = Stages(work / "stamps")
    train_set = open_dataset(spec.dataset, cfg.data, spec.train_split)
    eval_set = open_dataset(spec.dataset, cfg.data, spec.eval_split)
    log.info("data: %s (%d train, %d %s images)", cfg.data, len(train_set), len(eval_set), spec.eval_split)

    # 1. train (short): sssegmentation's recipe at the CPU-sized crop, stopped by the time budget
    ckpt = work / f"{MODEL}.pth"

    def do_train() -> Dict[str, Any]:
        if cfg.checkpoint:
            copy_atomic(cfg.checkpoint, ckpt)
            return {"checkpoint": str(cfg.checkpoint)}
        budget = {"iters": cfg.train_iters} if cfg.train_iters else {"max_minutes": cfg.train_minutes, "epochs": 1000}
        last = train(TrainConfig(model=MODEL, data=cfg.data, work_dir=work / "train", **budget, crop=cfg.crop, batch_size=cfg.batch_size, eval_every=0,
                                 eval_limit=cfg.eval_images, workers=1))
        copy_atomic(last, ckpt)
        return dict(json.loads((work / "train" / "summary.json").read_text()))

    train_summary = stages.run("train", {"data": cfg.data, "minutes": cfg.train_minutes, "iters": cfg.train_iters,
                                         "crop": cfg.crop,
                                         "checkpoint": cfg.checkpoint or "-"}, [ckpt], do_train)

    # 2. export FP32 / FP16 (labels output: HxW uint8 from the graph)
    model = zoo_model(MODEL, ckpt)
    info = DeployInfo.from_spec(spec, input_size=cfg.input_size, output="labels")
    onnx = {p: work / f"{MODEL}_{p}.onnx" for p in ("fp32", "fp16", "int8")}
    for precision in ("fp32", "fp16"):
        stages.run(f"export_{precision}", {"checkpoint": ckpt, "size": cfg.input_size}, [onnx[precision]],
                   lambda p=precision: str(export_onnx(model, info, onnx[p], precision=p)))

    # 2b. raw-frame FP16 artifact: uint8 BGR frames of the dataset's size in, labels at that size out
    frame = tuple(eval_set[0].image.shape[:2])
    frames_onnx = work / f"{MODEL}_fp16_bgr8_{frame[0]}x{frame[1]}.onnx"
    stages.run("export_fp16_bgr8", {"checkpoint": ckpt, "size": cfg.input_size, "frame": frame}, [frames_onnx],
               lambda: str(export_onnx(model, info.with_(input_format="bgr8", frame_size=frame), frames_onnx,
                                       precision="fp16")))

    # 3. INT8: calibration list from the training split, explicit Q/DQ
    calib = work / "calibration.txt"
    stages.run("quantize", {"onnx": onnx["fp32"], "data": cfg.data, "images": cfg.calib_images}, [onnx["int8"], calib],
               lambda: str(quantize_onnx(onnx["fp32"], CalibrationList.read(make_calibration_list(
                   MODEL, cfg.data, spec.train_split, cfg.calib_images, 0, out=calib)), onnx["int8"])))

    # 4. TensorRT engines where TensorRT and a GPU exist
    engines = build_engines(onnx, work)

    # 5. validate everything against PyTorch on the same images, and time each backend
    reference = TorchBackend(model, info)  # same deploy head as the artifacts: agreement shows numerics only
    artifacts = [OrtBackend(onnx[p], threads=2) for p in ("fp32", "fp16", "int8")] + engines
    artifacts.append(OrtBackend(frames_onnx, threads=2))  # the validator feeds it each image at its frame size
    report = validate(reference, artifacts, eval_set, limit=cfg.eval_images, report_dir=report_dir / "validation")
    rows = report.rows
    for row, backend in zip(rows, [reference, *artifacts]):
        row["latency_ms"] = measure(backend, iterations=cfg.bench_iters, warmup=1).p50_ms
    write_overlays(OrtBackend(frames_onnx), eval_set, report_dir / "overlays", n=3)
    write_json(report_dir / "demo.json", {"train": train_summary, "rows": rows, "data": str(cfg.data),
                                          "fast": cfg.fast, "tensorrt": [str(e.path) for e in engines]})
    table = format_table(rows)
    from .files import atomic_open

    with atomic_open(report_dir / "report.md", "w") as f:
        trained = (f"Checkpoint {cfg.checkpoint}" if cfg.checkpoint else
                   f"Trained {train_summary.get('iterations')} iterations ({train_summary.get('seconds')} s)")
        f.write(f"# pspnet-trt demo: {MODEL}\n\n{trained} on {cfg.data}; validated on {report.images} "
                f"{spec.eval_split} images at {cfg.input_size[0]}x{cfg.input_size[1]}.\n\n{table}\n\n"
                "Per-class IoU: validation/report.md, validation/iou_per_class.png. Overlays: overlays/.\n")
    return rows


def copy_atomic(src: Path, dst: Path) -> None:
    import shutil

    from .files import atomic_path

    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def build_engines(onnx: Dict[str, Path], work: Path) -> List[Any]:
    """FP16 and INT8 engines when TensorRT and a GPU are present; nothing (with a log line) otherwise."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        log.info("TensorRT is not installed: engines not built (CPU-only machine; see README, GPU path)")
        return []
    from .runtime.tensorrt import TensorRTBackend
    from .trt import BuildConfig, build_engine

    engines = []
    for precision in ("fp16", "int8"):
        path = build_engine(onnx[precision], work / f"{MODEL}_{precision}.engine",
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
    head = "| backend | precision | mIoU % | Δ vs PyTorch | agreement % | latency p50 ms | size MB | gate |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        def f(key: str, fmt: str) -> str:
            v = r.get(key)
            return "-" if v is None else format(v, fmt)

        gate = "-" if "passed" not in r else ("pass" if r["passed"] else "FAIL")
        lines.append(f"| {r['backend']} | {r['precision']} | {f('miou', '.2f')} | {f('delta', '+.2f')} | "
                     f"{f('agreement', '.3f')} | {f('latency_ms', '.1f')} | {f('size_mb', '.1f')} | {gate} |")
    return "\n".join(lines)
