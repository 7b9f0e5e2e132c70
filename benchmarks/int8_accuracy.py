"""INT8 accuracy targets on a trained model: mIoU of FP32, INT8 and mixed-precision INT8 ONNX on CamVid test.

    python benchmarks/int8_accuracy.py --checkpoint work/r18_os8_camvid_cpu/checkpoints-epoch-latest.pth \
        [--data $CAMVID_ROOT] [--limit N] [--budget 0.2]

Calibration: 64 class-balanced images of the *training* split; the mixed-precision search measures
sensitivity on the *val* split; mIoU is reported on the *test* split (the zoo entry's evaluation split).
Writes benchmarks/results/int8_accuracy_<host>_<date>.json.
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
from pspnet_trt.quant import CalibrationList, make_calibration_list, quantize_onnx
from pspnet_trt.quant.sensitivity import mixed_precision
from pspnet_trt.runtime.ort import OrtBackend
from pspnet_trt.runtime.torch_backend import TorchBackend
from pspnet_trt.validate import validate
from pspnet_trt.zoo import get_spec

ROOT = Path(__file__).resolve().parents[1]
MODEL = "r18_os8_camvid"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", default=os.environ.get("CAMVID_ROOT"))
    ap.add_argument("--limit", type=int)
    ap.add_argument("--budget", type=float, default=0.2)
    ap.add_argument("--method", default="entropy")
    args = ap.parse_args()
    spec = get_spec(MODEL)
    model = zoo_model(MODEL, args.checkpoint)
    info = DeployInfo.from_spec(spec, output="labels")
    result = {**host(), "checkpoint": args.checkpoint, "date": datetime.datetime.now().isoformat(timespec="seconds")}
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, info, Path(tmp) / "fp32.onnx")
        t = time.perf_counter()
        calib = CalibrationList.read(make_calibration_list(MODEL, args.data, "train", 64, 0, out=Path(tmp) / "cal.txt"))
        int8 = quantize_onnx(fp32, calib, Path(tmp) / "int8.onnx", args.method)
        result["quantize_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        mixed = mixed_precision(fp32, calib, open_dataset("camvid", args.data, "val"), args.budget,
                                Path(tmp) / "mixed.onnx", args.method, num_images=8)
        result["mixed_search_s"] = round(time.perf_counter() - t, 1)
        result["mixed"] = {k: v for k, v in mixed.to_dict().items() if k != "sensitivity"}
        report = validate(TorchBackend(model, info), [OrtBackend(fp32), OrtBackend(int8), OrtBackend(Path(tmp) / "mixed.onnx")],
                          open_dataset("camvid", args.data, "test"), labels=["fp32", "int8", "int8-mixed"],
                          limit=args.limit, tolerance=0.5)
    result["rows"] = [{k: r[k] for k in ("backend", "precision", "miou", "delta", "agreement", "images_per_s")}
                      for r in report.rows]
    m = {r["backend"]: r["miou"] for r in report.rows}
    result["int8_minus_fp32"] = m["int8"] - m["fp32"]
    result["mixed_minus_fp32"] = m["int8-mixed"] - m["fp32"]
    out = ROOT / "benchmarks" / "results" / f"int8_accuracy_{result['host']}_{datetime.date.today()}.json"
    write_json(out, result)
    for r in result["rows"]:
        print(r)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
