"""INT8 targets that need no trained model: ONNX Runtime CPU latency INT8 vs FP32 (r50_os8 at 512x1024,
same threads, medians of one run) and the wall time of calibration + quantization with 64 images.

    python benchmarks/quant_speed.py [--model r50_os8_cityscapes] [--size 512x1024] [--images 64] [--runs 5]
        [--latency-only | --calibration-only]

Random weights (latency does not depend on them); calibration images are CamVid training images
($CAMVID_ROOT, else the committed sample) resized to the input size, as Cityscapes is not available here.
Writes benchmarks/results/quant_speed_<host>_<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_results import results_path

from pspnet_trt.bench import host
from pspnet_trt.deploy import DeployInfo
from pspnet_trt.export import export_onnx, zoo_model
from pspnet_trt.files import write_json
from pspnet_trt.quant import CalibrationList, quantize_onnx
from pspnet_trt.runtime.ort import OrtBackend
from pspnet_trt.sizes import parse_size
from pspnet_trt.zoo import get_spec

ROOT = Path(__file__).resolve().parents[1]


def median_ms(backend: OrtBackend, x: np.ndarray, runs: int) -> float:
    backend.run(x)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        backend.run(x)
        times.append(1e3 * (time.perf_counter() - t))
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="r50_os8_cityscapes")
    ap.add_argument("--size", default="512x1024")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--method", default="entropy")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--latency-only", action="store_true", help="minmax on 4 images: latency ratios only")
    mode.add_argument("--calibration-only", action="store_true",
                      help="only the wall time of calibration + quantization (TensorRT graph, --images images)")
    args = ap.parse_args()
    spec, size = get_spec(args.model), parse_size(args.size)
    root = Path(os.environ.get("CAMVID_ROOT") or ROOT / "samples" / "camvid")
    images = sorted((root / "train").glob("*.png")) or sorted((root / "train").glob("*.jpg"))
    result = {**host(), "model": args.model, "input_size": list(size), "threads": args.threads,
              "date": datetime.datetime.now().isoformat(timespec="seconds")}
    with tempfile.TemporaryDirectory() as tmp:
        model = zoo_model(args.model, random_weights=True)
        fp32 = export_onnx(model, DeployInfo.from_spec(spec, input_size=size), Path(tmp) / "fp32.onnx")
        n = 4 if args.latency_only else args.images
        method = "minmax" if args.latency_only else args.method
        calib = CalibrationList(root, images[:: max(1, len(images) // n)][:n])
        t = time.perf_counter()
        int8 = {"tensorrt": quantize_onnx(fp32, calib, Path(tmp) / "int8.onnx", method)}
        result["calibration_quantization_s"] = round(time.perf_counter() - t, 1)
        result["calibration_images"], result["method"] = len(calib.images), method
        result["peak_rss_mb"] = round(peak_rss_mb(), 1)
        if args.calibration_only:
            return report(result, "_calibration")
        int8["cpu"] = quantize_onnx(fp32, calib, Path(tmp) / "int8_cpu.onnx", method, target="cpu")
        x = np.random.default_rng(0).standard_normal((1, 3, *size)).astype(np.float32)
        backends = {"fp32": OrtBackend(fp32, threads=args.threads)}
        backends.update({f"int8_{k}": OrtBackend(v, threads=args.threads) for k, v in int8.items()})
        times: dict = {k: [] for k in backends}
        for _ in range(2):  # interleaved, so background load hits all alike
            for k, b in backends.items():
                times[k].append(median_ms(b, x, args.runs))
        result["median_ms"] = {k: statistics.median(v) for k, v in times.items()}
        result["speedup_vs_fp32"] = {k: result["median_ms"]["fp32"] / v for k, v in result["median_ms"].items()}
        result["mb"] = {"fp32": fp32.stat().st_size / 1e6, **{k: v.stat().st_size / 1e6 for k, v in int8.items()}}
    return report(result, "_latency" if args.latency_only else "")


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def report(result: dict, suffix: str) -> int:
    out = results_path(f"quant_speed{suffix}")
    write_json(out, result)
    print({k: v for k, v in result.items() if k in ("median_ms", "speedup_vs_fp32", "calibration_quantization_s",
                                                    "calibration_images", "peak_rss_mb")})
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
