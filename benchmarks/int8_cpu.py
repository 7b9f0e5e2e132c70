"""INT8 on the CPU, with the CPU named: fake-quantization vs ONNX Runtime's optimized path for the TensorRT
graph, and ``quantize --target cpu`` accuracy and speed-up over FP32.

    python benchmarks/int8_cpu.py [--checkpoint CKPT] [--data $CAMVID_ROOT] [--limit 10] [--calibration 32]

r18_os8_camvid at its deploy size; calibration on the *train* split, figures on the first ``--limit``
*test* images. Without ``--checkpoint`` the model has random weights (near-tied logits: agreement
figures are then far more sensitive to rounding than a trained model's) and the JSON says so.

* ``int8 fake-quant``: the TensorRT graph as the validator runs it (ONNX Runtime, optimizations off:
  Q/DQ as float math, the same on every CPU); ``int8 ort-optimized``: the same file with ONNX
  Runtime's optimizations on (what the validator ran before; depends on the CPU's kernels);
* ``int8 cpu``: ``quantize --target cpu`` (U8S8, the choice for this CPU's class recorded in the file);
  ``int8 cpu-avx2``: the same made for an AVX2-only CPU (injected flags: 7-bit weights, ``reduce_range``).
  Run on a VNNI CPU its integer sums are exact, so its accuracy is that of the non-VNNI choice without
  saturation (what ``reduce_range`` is for); its speed here says nothing about an AVX2 CPU.

Writes benchmarks/results/int8_cpu_<host>_<date>.json (host() names the CPU, its class and flags).
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

from pspnet_trt.artifacts import read_onnx_info
from pspnet_trt.bench import host, measure
from pspnet_trt.cpu import from_flags
from pspnet_trt.data import open_dataset
from pspnet_trt.deploy import DeployInfo
from pspnet_trt.export import export_onnx, zoo_model
from pspnet_trt.files import write_json
from pspnet_trt.quant import CalibrationList, make_calibration_list, quantize_onnx
from pspnet_trt.runtime.ort import OrtBackend
from pspnet_trt.runtime.torch_backend import TorchBackend
from pspnet_trt.validate import validate
from pspnet_trt.zoo import get_spec

ROOT = Path(__file__).resolve().parents[1]
MODEL = "r18_os8_camvid"


def ort_levels(path: Path, test, info: DeployInfo, n: int, work: Path) -> dict:
    """For each ONNX Runtime optimization level: the ops it really executes on the TensorRT graph (the
    optimized model it saves) and its argmax agreement with ORT_DISABLE_ALL (fake-quant) on ``n`` images."""
    from collections import Counter

    import numpy as np
    import onnx
    import onnxruntime as ort

    from pspnet_trt.preprocess import make_batch

    batches = [make_batch([test[i].image], info.input_size, info.normalization) for i in range(n)]
    out, base = {}, None
    for level in ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"):
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        options.optimized_model_filepath = str(work / f"{level}.onnx")
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        labels = [session.run(["logits"], {info.input_name: b})[0].argmax(1) for b in batches]
        base = base or labels
        graph = onnx.load(str(work / f"{level}.onnx"), load_external_data=False).graph
        inits = {i.name: i.data_type for i in graph.initializer}
        int32_bias = sum(1 for node in graph.node if node.op_type == "DequantizeLinear"
                         and inits.get(node.input[0]) == onnx.TensorProto.INT32)
        out[level] = {"ops": dict(Counter(node.op_type for node in graph.node)), "int32_bias_dequantize": int32_bias,
                      "agreement_with_fake_quant": 100 * float(np.mean([(a == b).mean() for a, b in zip(labels, base)]))}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="trained checkpoint (default: random weights, said so in the JSON)")
    ap.add_argument("--data", default=os.environ.get("CAMVID_ROOT"))
    ap.add_argument("--limit", type=int, default=10, help="test images")
    ap.add_argument("--calibration", type=int, default=32, help="calibration images from train")
    ap.add_argument("--method", default="entropy")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10, help="timed runs per graph (medians)")
    args = ap.parse_args()
    spec = get_spec(MODEL)
    model = zoo_model(MODEL, args.checkpoint, random_weights=args.checkpoint is None)
    info = DeployInfo.from_spec(spec, output="logits")
    test = open_dataset("camvid", args.data, "test")
    result = {**host(), "model": MODEL, "input_size": list(info.input_size), "threads": args.threads,
              "weights": args.checkpoint or "random (no trained checkpoint available)", "test_images": args.limit,
              "date": datetime.datetime.now().isoformat(timespec="seconds")}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fp32 = export_onnx(model, info, work / "fp32.onnx")
        calib = CalibrationList.read(make_calibration_list(MODEL, args.data, "train", args.calibration, 0,
                                                           out=work / "cal.txt"), args.data)
        t = time.perf_counter()
        trt = quantize_onnx(fp32, calib, work / "int8.onnx", args.method)
        result["quantize_tensorrt_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        cpu = quantize_onnx(fp32, calib, work / "int8_cpu.onnx", args.method, target="cpu")
        result["quantize_cpu_s"] = round(time.perf_counter() - t, 1)
        avx2 = from_flags(("sse4_1", "avx", "avx2", "fma", "f16c"), "injected AVX2-only x86", "x86_64")
        cpu_avx2 = quantize_onnx(fp32, calib, work / "int8_cpu_avx2.onnx", args.method, target="cpu", cpu=avx2)
        q = read_onnx_info(cpu).extra["quantization"]
        result["cpu_target_choice"] = {k: q[k] for k in ("activations", "weights", "reduce_range", "reduce_range_why")}
        backends = {"fp32": OrtBackend(fp32, threads=args.threads),
                    "int8 fake-quant": OrtBackend(trt, threads=args.threads),
                    "int8 ort-optimized": OrtBackend(trt, threads=args.threads, fake_quant=False),
                    "int8 cpu": OrtBackend(cpu, threads=args.threads),
                    "int8 cpu-avx2": OrtBackend(cpu_avx2, threads=args.threads)}
        labels = list(backends)
        report = validate(TorchBackend(model, info, threads=args.threads), list(backends.values()), test,
                          labels=labels, limit=args.limit, tolerance=100, progress=False)
        result["rows"] = [{k: r[k] for k in ("backend", "precision", "miou", "delta", "agreement", "images_per_s",
                                             "numerics")} for r in report.rows]
        # the two INT8 paths of the same TensorRT graph against each other
        pair = validate(backends["int8 fake-quant"], [backends["int8 ort-optimized"]], test, limit=args.limit,
                        tolerance=100, progress=False)
        result["fake_vs_optimized"] = {"agreement": pair.rows[1]["agreement"],
                                       "miou_fake": pair.rows[0]["miou"], "miou_optimized": pair.rows[1]["miou"]}
        result["ort_levels"] = ort_levels(trt, test, info, min(args.limit, 3), work)
        latency = {k: measure(b, iterations=args.runs, warmup=2).p50_ms for k, b in backends.items()}
        result["latency_p50_ms"] = latency
        result["speedup_vs_fp32"] = {k: latency["fp32"] / v for k, v in latency.items() if k != "fp32"}
        result["fake_quant_time_cost"] = latency["int8 fake-quant"] / latency["int8 ort-optimized"]
        for b in backends.values():
            b.close()
    out = results_path("int8_cpu")
    write_json(out, result)
    for r in result["rows"]:
        print({k: v for k, v in r.items() if k != "numerics"})
    print("fake vs optimized:", result["fake_vs_optimized"])
    print("latency p50 ms:", latency, "speed-up vs FP32:", result["speedup_vs_fp32"])
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
