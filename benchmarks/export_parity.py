"""Issue targets for export: FP32/FP16 ONNX vs PyTorch at the zoo's deploy sizes, export time and
size, and ONNX Runtime vs PyTorch eager CPU latency. Writes benchmarks/results/export_parity_<host>_<date>.json.

    python benchmarks/export_parity.py [--images N] [--configs r50_os8_cityscapes ...] [--threads 2]

Random weights with random BatchNorm statistics (see sssegmentation-pspnet.md, section 3), inputs
are real CamVid images ($CAMVID_ROOT, else the committed sample) resized to each deploy size.
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

import torch

from pspnet_trt.bench import host
from pspnet_trt.deploy import DeployInfo
from pspnet_trt.export import check_export, export_onnx
from pspnet_trt.files import write_json
from pspnet_trt.models import build_model, randomize_
from pspnet_trt.preprocess import make_batch, read_image
from pspnet_trt.runtime.ort import OrtBackend
from pspnet_trt.runtime.torch_backend import TorchBackend
from pspnet_trt.zoo import get_spec

ROOT = Path(__file__).resolve().parents[1]
# One config per (depth, output stride, deploy size): the dataset only changes the class count.
CONFIGS = ["r50_os8_cityscapes", "r50_os16_cityscapes", "r101_os8_cityscapes", "r101_os16_cityscapes",
           "r50_os8_voc", "r50_os16_voc", "r101_os8_voc", "r101_os16_voc"]


def camvid_images(n: int):
    root = Path(os.environ.get("CAMVID_ROOT") or ROOT / "samples" / "camvid")
    files = sorted((root / "test").glob("*.png")) or sorted((root / "test").glob("*.jpg"))
    return [read_image(str(p)) for p in files[:: max(1, len(files) // n)][:n]]


def median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="*", default=CONFIGS)
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--latency-runs", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    images = camvid_images(args.images)
    results = {**host(), "threads": args.threads,
               "torch": torch.__version__, "date": datetime.datetime.now().isoformat(timespec="seconds"), "configs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            spec = get_spec(name)
            model = randomize_(build_model(name), 0)
            row = {"model": name, "input_size": list(spec.deploy_size)}
            for precision in ("fp32", "fp16"):
                info = DeployInfo.from_spec(spec, output="both", precision=precision)
                path = Path(tmp) / f"{name}_{precision}.onnx"
                t = time.perf_counter()
                export_onnx(model, info, path)
                row[f"{precision}_export_s"] = round(time.perf_counter() - t, 2)
                row[f"{precision}_size_mb"] = round(path.stat().st_size / 1e6, 2)
                report = check_export(model, path, images=images, threads=args.threads)
                row[f"{precision}_relative_error"] = report.relative_error
                row[f"{precision}_max_abs_logit_diff"] = report.max_abs_logit_diff
                row[f"{precision}_argmax_agreement"] = report.argmax_agreement
                print(report, flush=True)
                if precision == "fp32" and name == "r50_os8_cityscapes":
                    batch = make_batch(images[:1], spec.deploy_size, spec.normalization)
                    ort = OrtBackend(path, threads=args.threads)
                    ref = TorchBackend(model, info)
                    ort.run(batch), ref.run(batch)  # warm-up
                    row["ort_cpu_latency_ms"] = median_ms(lambda: ort.run(batch), args.latency_runs)
                    row["torch_cpu_latency_ms"] = median_ms(lambda: ref.run(batch), args.latency_runs)
                    print(f"latency ORT {row['ort_cpu_latency_ms']:.0f} ms, PyTorch {row['torch_cpu_latency_ms']:.0f} ms",
                          flush=True)
                path.unlink()
            results["configs"].append(row)
    out = Path(args.out) / f"export_parity_{results['host']}_{datetime.date.today()}.json"
    write_json(out, results)
    print(out)
    ok = all(r["fp32_relative_error"] <= 1e-4 and r["fp32_argmax_agreement"] >= 0.99999
             and r["fp16_argmax_agreement"] >= 0.999 for r in results["configs"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
