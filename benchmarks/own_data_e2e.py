"""Your own data, end to end: a 6-class folder data set made from CamVid, every stage, the figures.

    CAMVID_ROOT=/data/camvid python benchmarks/own_data_e2e.py [--train 40 --val 12] [--minutes 8] [--work-dir D]

Relays ``--train`` CamVid train and ``--val`` CamVid val images as a folder data set at their real size
(``tools/camvid_folder.py``: JPEG images, class-id train masks, RGB palette val masks, no test split, renamed
files), then runs the commands docs/own-data.md shows: ``train --load-from samples/r18_os8_camvid_camvid.pth``
(the recipe's crop and batch, the poly decay fitted into ``--minutes``), ``export`` (no class flags), ``info
--json``, ``calibrate`` + ``quantize``, ``validate --split val`` (FP32 and INT8 ONNX against PyTorch) and
``predict``, and checks what the issue asks: the six names and the palette in the metadata and report.json, FP32
within 0.05 and INT8 within 1.0 mIoU points of PyTorch, labels 0..5 at the image size. Writes
benchmarks/results/own_data_e2e_<host>_<date>.json (or --out); exit 1 if a check fails.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import cv2
import numpy as np
from bench_results import results_path

from pspnet_trt.bench import host
from pspnet_trt.files import write_json

ROOT = Path(__file__).resolve().parents[1]


def _tool() -> Any:
    spec = importlib.util.spec_from_file_location("camvid_folder", ROOT / "tools" / "camvid_folder.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def run(args: List[str], log: Dict[str, float]) -> str:
    """``pspnet-trt ARGS``; its stdout; its wall time into ``log`` under the command's name."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pspnet_trt", *args], capture_output=True, text=True)
    log[args[0]] = round(log.get(args[0], 0.0) + time.perf_counter() - t, 1)
    if proc.returncode != 0:
        sys.exit(f"pspnet-trt {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return proc.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--camvid", default=os.environ.get("CAMVID_ROOT"), help="CamVid, SegNet layout ($CAMVID_ROOT)")
    ap.add_argument("--train", type=int, default=40)
    ap.add_argument("--val", type=int, default=12)
    ap.add_argument("--minutes", type=float, default=8.0, help="training budget (--max-minutes)")
    ap.add_argument("--work-dir", type=Path, default=Path("own_data_e2e"))
    ap.add_argument("--out")
    a = ap.parse_args()
    if not a.camvid:
        sys.exit("pass --camvid or set CAMVID_ROOT")
    tool = _tool()
    w = a.work_dir.resolve()
    if w.exists():
        sys.exit(f"{w} exists: pass another --work-dir")
    data = tool.make(Path(a.camvid), w / "roads6", a.train, a.val, "val")
    times: Dict[str, float] = {}
    ckpt = w / "run" / "checkpoints-epoch-latest.pth"
    run(["train", "--model", "r18_os8_camvid", "--data", str(data), "--load-from",
         str(ROOT / "samples" / "r18_os8_camvid_camvid.pth"), "--max-minutes", str(a.minutes), "--eval-every", "0",
         "--work-dir", str(w / "run")], times)
    summary = json.loads((w / "run" / "summary.json").read_text())
    onnx, int8, calib = w / "roads6.onnx", w / "roads6_int8.onnx", w / "calib.txt"
    run(["export", "--model", "r18_os8_camvid", "--checkpoint", str(ckpt), "--out", str(onnx)], times)
    meta = json.loads(run(["info", str(onnx), "--json"], times))["metadata"]
    run(["calibrate", "--model", "r18_os8_camvid", "--data", str(data), "--num-images", str(min(32, a.train)),
         "--input-size", "360x480", "--out", str(calib)], times)
    run(["quantize", "--onnx", str(onnx), "--calibration", str(calib), "--data", str(data), "--out", str(int8)], times)
    run(["validate", "--model", "r18_os8_camvid", "--checkpoint", str(ckpt), "--data", str(data), "--split", "val",
         "--onnx", str(onnx), "--onnx", str(int8), "--tolerance", "1.0", "--report", str(w / "report")], times)
    report = json.loads((w / "report" / "report.json").read_text())
    image = sorted((data / "images" / "val").iterdir())[0]
    run(["predict", "--model", str(int8), "--out", str(w / "pred"), str(image)], times)
    labels = cv2.imread(str(w / "pred" / f"{image.stem}_labels.png"), cv2.IMREAD_UNCHANGED)
    torch_row, fp32, q = report["backends"]
    classes = json.loads((data / "classes.json").read_text())
    checks = {
        "metadata_class_names": meta["class_names"] == classes["classes"],
        "metadata_palette": meta["palette"] == classes["palette"],
        "report_class_names": report["class_names"] == classes["classes"],
        "fp32_within_0.05": abs(fp32["delta"]) <= 0.05,
        "int8_within_1.0": q["delta"] >= -1.0,
        "labels_0_to_5_at_image_size": labels.shape == cv2.imread(str(image)).shape[:2] and int(labels.max()) <= 5,
    }
    result = {
        **host(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": f"CAMVID_ROOT={a.camvid} python benchmarks/own_data_e2e.py --train {a.train} --val {a.val} "
                   f"--minutes {a.minutes}",
        "train_images": a.train, "val_images": a.val, "iterations": summary["iterations"],
        "train_seconds": summary["train_seconds"],
        "miou": {"pytorch": torch_row["miou"], "onnx_fp32": fp32["miou"], "onnx_int8": q["miou"]},
        "delta": {"onnx_fp32": fp32["delta"], "onnx_int8": q["delta"]},
        "agreement": {"onnx_fp32": fp32["agreement"], "onnx_int8": q["agreement"]},
        "iou": torch_row["iou"], "labels_present": sorted(int(v) for v in np.unique(labels)),
        "seconds": times, "checks": checks, "passed": all(checks.values()),
    }
    out = results_path("own_data_e2e", a.out)
    write_json(out, result)
    print(json.dumps({k: result[k] for k in ("miou", "delta", "checks", "seconds")}, indent=1))
    print(out)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
