"""Quantizer choice by measurement: onnxruntime.quantization (ours) vs NVIDIA ModelOpt ONNX PTQ.

    python benchmarks/quantizer_compare.py --checkpoint work/r18_os8_camvid_cpu/checkpoints-epoch-10.pth \
        --modelopt-python ../venv-mo/bin/python [--data $CAMVID_ROOT] [--limit N]

Same FP32 ONNX, same 64 class-balanced *training* images, same calibration method (entropy), then
mIoU of every INT8 graph on the CamVid *test* split against PyTorch, plus the time to quantize
and the ONNX Runtime CPU latency of each graph. ModelOpt runs in its own environment through
``benchmarks/modelopt_ptq.py`` (see there how to make it), because ``nvidia-modelopt[onnx]``
clashes with onnxruntime in ours. Variants:

* ``ort``: ``pspnet-trt quantize`` (Q/DQ on Conv/Add inputs, PPM convs and classifier float).
* ``modelopt``: ModelOpt with its own defaults for TensorRT (its op selection and placement:
  also Q/DQ in front of the pools, Resize, Concat, the PPM convs and the classifier), rest FP32.
* ``modelopt-ours``: ModelOpt restricted to our placement (Conv/Add, same exclusions), which
  isolates its calibration from its placement.
* ``modelopt-fp16``: ModelOpt's defaults as shipped (non-quantized layers converted to FP16); its
  agreement is also measured with ONNX Runtime's graph optimizations off, because ONNX Runtime
  1.32's CPU optimizer (already at ORT_ENABLE_BASIC) breaks this FP16 + Q/DQ graph (~62 % vs 99.5 %).

Writes benchmarks/results/quantizer_compare_<host>_<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
from bench_results import results_path

from pspnet_trt.artifacts import attach_metadata, save_onnx
from pspnet_trt.bench import host, measure
from pspnet_trt.data import open_dataset
from pspnet_trt.deploy import DeployInfo
from pspnet_trt.export import export_onnx, zoo_model
from pspnet_trt.files import write_json
from pspnet_trt.quant import CalibrationList, make_calibration_list, quantize_onnx
from pspnet_trt.quant.qdq import check_placement, excluded_nodes, qdq_summary
from pspnet_trt.runtime.ort import OrtBackend
from pspnet_trt.runtime.torch_backend import TorchBackend
from pspnet_trt.validate import validate
from pspnet_trt.zoo import get_spec

ROOT = Path(__file__).resolve().parents[1]
MODEL = "r18_os8_camvid"
MODELOPT_VARIANTS: Dict[str, List[str]] = {
    "modelopt": ["--high-precision", "fp32"],
    "modelopt-ours": ["--high-precision", "fp32", "--op-types", "Conv,Add"],
    "modelopt-fp16": ["--high-precision", "fp16"],
}


def placement(model: Any) -> Dict[str, Any]:
    """Which op types a DequantizeLinear feeds, and whether our TensorRT placement rules hold."""
    producers = {o: n for n in model.graph.node for o in n.output}
    fed: Dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") and any(
                producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in node.input):
            fed[node.op_type] = fed.get(node.op_type, 0) + 1
    try:
        check_placement(model)
        rule = "ok"
    except RuntimeError as e:
        rule = str(e)
    return {"dq_feeds": fed, **qdq_summary(model), "our_placement_rule": rule,
            "opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))}


def optimizer_check(fp32: Path, onnx_path: Path, images: List[np.ndarray], threads: int) -> Dict[str, float]:
    """Label agreement with the FP32 graph with ONNX Runtime's graph optimizations on and off: tells an
    ONNX Runtime CPU defect from a defect of the graph itself."""
    import onnxruntime as ort

    def session(path: Path, level: Any) -> Any:
        options = ort.SessionOptions()
        options.graph_optimization_level, options.intra_op_num_threads = level, threads
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    ref = session(fp32, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    out = {}
    for name, level in (("optimized", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
                        ("unoptimized", ort.GraphOptimizationLevel.ORT_DISABLE_ALL)):
        s = session(onnx_path, level)
        feed = ref.get_inputs()[0].name
        out[name] = round(100 * float(np.mean([np.mean(s.run(None, {feed: x})[0] == ref.run(None, {feed: x})[0])
                                               for x in images])), 2)
    return out


def run_modelopt(python: str, fp32: Path, calib: Path, out: Path, extra: List[str]) -> Dict[str, Any]:
    cmd = [python, str(ROOT / "benchmarks" / "modelopt_ptq.py"), "--onnx", str(fp32), "--calibration", str(calib),
           "--out", str(out), "--method", "entropy", *extra]
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--modelopt-python", required=True, help="python of the environment with nvidia-modelopt")
    ap.add_argument("--data", default=os.environ.get("CAMVID_ROOT"))
    ap.add_argument("--limit", type=int, help="test images (default: all)")
    ap.add_argument("--work", default=str(ROOT / "work" / "quantizer_compare"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import onnx

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    spec = get_spec(MODEL)
    model = zoo_model(MODEL, args.checkpoint)
    info = DeployInfo.from_spec(spec, output="labels")
    fp32 = export_onnx(model, info, work / "fp32.onnx")
    calib_list = CalibrationList.read(make_calibration_list(MODEL, args.data, "train", 64, 0,
                                                            out=work / "calibration.txt"), args.data)
    calib_npy = work / "calibration.npy"
    np.save(calib_npy, np.concatenate(list(calib_list.batches(info))))

    result: Dict[str, Any] = {**host(), "checkpoint": args.checkpoint, "method": "entropy",
                              "calibration_images": len(calib_list.images),
                              "date": datetime.datetime.now().isoformat(timespec="seconds"), "variants": {}}
    t = time.perf_counter()
    quantize_onnx(fp32, calib_list, work / "ort.onnx", "entropy")
    result["variants"]["ort"] = {"tool": "onnxruntime.quantization", "seconds": round(time.perf_counter() - t, 1),
                                 "excluded": list(excluded_nodes(onnx.load(str(fp32))))}
    ours_exclude = [f"^{n}$" for n in excluded_nodes(onnx.load(str(fp32)))]
    for name, extra in MODELOPT_VARIANTS.items():
        if name == "modelopt-ours":
            extra = extra + [a for n in ours_exclude for a in ("--exclude", n)]
        out = work / f"{name}.onnx"
        result["variants"][name] = run_modelopt(args.modelopt_python, fp32, calib_npy, out, extra)
        q = onnx.load(str(out))  # ModelOpt drops our metadata: put it back so the validator accepts the file
        save_onnx(attach_metadata(q, info.with_(precision="int8", extra={"quantization": result["variants"][name]})), out)

    names = ["ort", *MODELOPT_VARIANTS]
    for name in names:
        q = onnx.load(str(work / f"{name}.onnx"))
        result["variants"][name]["placement"] = placement(q)
        result["variants"][name]["mb"] = round((work / f"{name}.onnx").stat().st_size / 1e6, 1)
    backends = [OrtBackend(fp32, threads=args.threads)] + [OrtBackend(work / f"{n}.onnx", threads=args.threads) for n in names]
    report = validate(TorchBackend(model, info), backends, open_dataset("camvid", args.data, "test"),
                      labels=["fp32", *names], limit=args.limit, tolerance=0.5)
    result["test_images"] = report.images
    rows = {r["backend"]: r for r in report.rows}
    result["fp32_miou"] = rows["fp32"]["miou"]
    probe = [np.concatenate(list(CalibrationList(calib_list.root, calib_list.images[:4]).batches(info)))[i:i + 1]
             for i in range(4)]
    result["variants"]["modelopt-fp16"]["agreement_4_calibration_images"] = optimizer_check(
        fp32, work / "modelopt-fp16.onnx", probe, args.threads)
    for name in ["fp32", *names]:
        entry = result["variants"].setdefault(name, {"tool": "export"})
        entry.update({k: rows[name][k] for k in ("miou", "delta", "agreement")})
        backend = OrtBackend(work / f"{name}.onnx", threads=args.threads)
        entry["ort_cpu_ms_p50"] = round(measure(backend, iterations=7, warmup=2).p50_ms, 1)
    out = results_path("quantizer_compare")
    write_json(out, result)
    print(f"{'variant':15s} {'mIoU':>7s} {'delta':>7s} {'agree%':>7s} {'quant s':>8s} {'CPU ms':>7s}")
    for name, v in result["variants"].items():
        delta = v.get("delta") or 0.0
        print(f"{name:15s} {v['miou']:7.2f} {delta:+7.2f} {v.get('agreement') or 100:7.2f} "
              f"{v.get('seconds', float('nan')):8.1f} {v['ort_cpu_ms_p50']:7.1f}")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
