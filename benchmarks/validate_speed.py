"""Validator target: 101 CamVid val images at 360x480, PyTorch + two ONNX artifacts, wall time (<= 5 min on 2 cores).

    python benchmarks/validate_speed.py [--checkpoint CKPT] [--data $CAMVID_ROOT]

Writes benchmarks/results/validate_speed_<host>_<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

from pspnet_trt.bench import host
from pspnet_trt.data import open_dataset
from pspnet_trt.deploy import DeployInfo
from pspnet_trt.export import export_onnx, zoo_model
from pspnet_trt.files import write_json
from pspnet_trt.runtime.ort import OrtBackend
from pspnet_trt.runtime.torch_backend import TorchBackend
from pspnet_trt.validate import validate
from pspnet_trt.zoo import get_spec

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint")
    ap.add_argument("--data", default=os.environ.get("CAMVID_ROOT"))
    args = ap.parse_args()
    spec = get_spec("r18_os8_camvid")
    model = zoo_model(spec.name, args.checkpoint)
    info = DeployInfo.from_spec(spec, output="labels")
    with tempfile.TemporaryDirectory() as tmp:
        a = export_onnx(model, info, Path(tmp) / "fp32.onnx")
        b = export_onnx(model, info, Path(tmp) / "fp16.onnx", precision="fp16")
        start = time.perf_counter()
        report = validate(TorchBackend(model, info), [OrtBackend(a, threads=2), OrtBackend(b, threads=2)],
                          open_dataset("camvid", args.data, "val"), progress=False)
        seconds = time.perf_counter() - start
    result = {**host(), "images": report.images, "backends": 3, "seconds": round(seconds, 1),
              "target_seconds": 300, "checkpoint": args.checkpoint,
              "rows": [{k: r[k] for k in ("backend", "miou", "images_per_s")} for r in report.rows]}
    out = ROOT / "benchmarks" / "results" / f"validate_speed_{result['host']}_{datetime.date.today()}.json"
    write_json(out, result)
    print(result["seconds"], "s for", report.images, "images x 3 backends ->", out)
    return 0 if seconds <= 300 else 1


if __name__ == "__main__":
    sys.exit(main())
