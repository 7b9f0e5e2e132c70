"""INT8 accuracy targets on a trained model: mIoU of FP32, INT8 and mixed-precision INT8 ONNX on CamVid test.

    python benchmarks/int8_accuracy.py --checkpoint work/r18_os8_camvid_cpu/checkpoints-epoch-latest.pth \
        [--data $CAMVID_ROOT] [--limit N] [--budget 0.2]

Calibration: 64 class-balanced images of the *training* split; the mixed-precision search measures
sensitivity on the *val* split; mIoU is reported on the *test* split (the zoo entry's evaluation split).
Graphs, all against PyTorch on the same images:

* ``fp32``: the FP32 export; ``int8``: ``pspnet-trt quantize`` (residual Adds quantized on the residual
  input only); ``int8-both-adds``: the same with both Add inputs quantized (our placement before, for
  the A/B); ``int8-mixed``: ``--mixed-budget`` with the kept layers in FP16 (the default) and
  ``int8-mixed-fp32``: the same layers kept in FP32;
* ``int8-top2-fp16`` / ``int8-top2-fp32``: the two most sensitive layers out of INT8 regardless of
  the budget (so FP16 islands are measured on the real model even when INT8 alone meets the budget).

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
from unittest import mock

from bench_results import results_path
from quantizer_compare import optimizer_check

from pspnet_trt.bench import host
from pspnet_trt.data import open_dataset
from pspnet_trt.deploy import DeployInfo
from pspnet_trt.export import export_onnx, zoo_model
from pspnet_trt.files import write_json
from pspnet_trt.preprocess import make_batch
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
    val = open_dataset("camvid", args.data, "val")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fp32 = export_onnx(model, info, work / "fp32.onnx")
        t = time.perf_counter()
        calib = CalibrationList.read(make_calibration_list(MODEL, args.data, "train", 64, 0, out=work / "cal.txt"),
                                     args.data)
        graphs = {"fp32": fp32, "int8": quantize_onnx(fp32, calib, work / "int8.onnx", args.method)}
        result["quantize_s"] = round(time.perf_counter() - t, 1)
        # the previous placement, which check_placement now refuses for TensorRT
        with mock.patch("pspnet_trt.quant.qdq.residual_adds", lambda m: 0), \
                mock.patch("pspnet_trt.quant.qdq.check_placement", lambda m, t: None):
            graphs["int8-both-adds"] = quantize_onnx(fp32, calib, work / "both.onnx", args.method)
        t = time.perf_counter()
        mixed = mixed_precision(fp32, calib, val, args.budget, work / "mixed.onnx", args.method, num_images=8)
        result["mixed_search_s"] = round(time.perf_counter() - t, 1)
        result["mixed"] = {k: v for k, v in mixed.to_dict().items() if k != "sensitivity"}
        graphs["int8-mixed"] = work / "mixed.onnx"
        if mixed.kept_float:
            graphs["int8-mixed-fp32"] = quantize_onnx(fp32, calib, work / "mixed32.onnx", args.method,
                                                      keep_float=mixed.kept_float, float_dtype="fp32")
        top = mixed_precision(fp32, calib, val, -100.0, work / "top2.onnx", args.method, num_images=8, max_float=2)
        result["top2"] = {"kept_float": top.kept_float, "sensitivity": {k: top.sensitivity[k] for k in top.kept_float}}
        graphs["int8-top2-fp16"] = work / "top2.onnx"
        graphs["int8-top2-fp32"] = quantize_onnx(fp32, calib, work / "top2_32.onnx", args.method,
                                                 keep_float=top.kept_float, float_dtype="fp32")
        # ONNX Runtime 1.32's CPU optimizer breaks FP16 + Q/DQ graphs of another kind (quantizer_compare.py):
        # the FP16-island graphs must give the same labels with its optimizations on and off
        images = [make_batch([open_dataset("camvid", args.data, "test")[i].image], info.input_size, info.normalization)
                  for i in range(20)]
        result["optimizer_check"] = {k: optimizer_check(fp32, graphs[k], images, threads=2)
                                     for k in ("int8", "int8-mixed", "int8-top2-fp16")}
        labels = list(graphs)
        report = validate(TorchBackend(model, info), [OrtBackend(graphs[k]) for k in labels],
                          open_dataset("camvid", args.data, "test"), labels=labels, limit=args.limit, tolerance=0.5)
    result["rows"] = [{k: r[k] for k in ("backend", "precision", "miou", "delta", "agreement", "images_per_s")}
                      for r in report.rows]
    m = {r["backend"]: r["miou"] for r in report.rows}
    result["minus_fp32"] = {k: m[k] - m["fp32"] for k in labels if k != "fp32"}
    out = results_path("int8_accuracy")
    write_json(out, result)
    for r in result["rows"]:
        print(r)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
