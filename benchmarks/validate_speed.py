"""Validator target: 101 CamVid val images at 360x480, PyTorch + two ONNX artifacts, <= 5 min on 2 cores.

    python benchmarks/validate_speed.py [--checkpoint CKPT] [--data $CAMVID_ROOT] [--split val]

Times what `pspnet-trt validate --model r18_os8_camvid --checkpoint CKPT --data DATA --split val
--onnx fp32.onnx --onnx fp16.onnx` does (validate_artifacts: open both ONNX files, load the PyTorch
model, read each image once, run all three backends, write the report), after exporting the two
artifacts (labels output, 360x480). Without --checkpoint the weights are random (same speed, with a
random-weights checkpoint written first). Writes benchmarks/results/validate_speed_<host>_<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

from bench_results import results_path

from pspnet_trt.bench import host
from pspnet_trt.checkpoints import save_checkpoint
from pspnet_trt.deploy import DeployInfo
from pspnet_trt.export import export_onnx, zoo_model
from pspnet_trt.files import sha256_file, write_json
from pspnet_trt.validate import validate_artifacts
from pspnet_trt.zoo import get_spec

ROOT = Path(__file__).resolve().parents[1]
MODEL = "r18_os8_camvid"
TARGET_S = 300


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="trained checkpoint (default: random weights)")
    ap.add_argument("--data", default=os.environ.get("CAMVID_ROOT"))
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int)
    args = ap.parse_args()
    if not args.data:
        ap.error("--data (or CAMVID_ROOT) is required")
    import torch

    spec = get_spec(MODEL)
    model = zoo_model(MODEL, args.checkpoint, random_weights=args.checkpoint is None)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(args.checkpoint) if args.checkpoint else save_checkpoint(Path(tmp) / "random.pth", model.state_dict())
        info = DeployInfo.from_spec(spec, output="labels", checkpoint_sha256=sha256_file(ckpt))
        onnx = [export_onnx(model, info, Path(tmp) / f"{p}.onnx", precision=p) for p in ("fp32", "fp16")]
        load = os.getloadavg()[0]
        start = time.perf_counter()
        report = validate_artifacts(MODEL, onnx, args.data, split=args.split, checkpoint=ckpt, limit=args.limit,
                                    report_dir=Path(tmp) / "report", progress=False)
        seconds = time.perf_counter() - start
    result = {
        **host(), "date": datetime.datetime.now().isoformat(timespec="seconds"), "model": MODEL,
        "input_size": list(spec.deploy_size), "split": args.split, "images": report.images, "backends": 3,
        "seconds": round(seconds, 1), "validate_loop_seconds": report.seconds, "target_seconds": TARGET_S,
        "met": seconds <= TARGET_S, "checkpoint": args.checkpoint or "random weights",
        "torch_threads": torch.get_num_threads(), "load_average_1min_at_start": round(load, 2),
        "passed": report.passed,
        "rows": [{k: r[k] for k in ("backend", "miou", "delta", "agreement", "images_per_s")} for r in report.rows],
    }
    out = results_path("validate_speed")
    write_json(out, result)
    print(f"{result['seconds']} s (target {TARGET_S} s) for {report.images} images x 3 backends -> {out}")
    for r in result["rows"]:
        print(r)
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
