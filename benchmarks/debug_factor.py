"""Issue 26 item 15: does `pspnet-trt debug`'s divergence rule hold on models and images it was not chosen on?

    CAMVID_ROOT=... python benchmarks/debug_factor.py [--split val] [--images 3] [--scales 2 4 8]
        [--configs random_seed1 narrow_seed2 trained] [--out PATH]

The rule (pspnet_trt/debug/compare.py, ``first_divergence``): the first tensor whose added error (growth) exceeds
``FACTOR x max(NOISE_FLOOR[precision], median growth of the earlier tensors of the same kind)``. FACTOR = 3.5 was
chosen on r18_os8_camvid (random weights, seed 0, at 64x128; the trained checkpoint at 360x480) with the CamVid
*test* images the tests use. Here, on other models and on the CamVid *val* split (never used to choose it):

* untouched FP16 and INT8 graphs (TensorRT Q/DQ placement, entropy calibration on 8 *train* images): the largest
  ratio ``growth / max(floor, median)`` over all tensors (the rule fires above FACTOR), the worst relative L2 of
  any tensor and that of the logits;
* planted faults: one INT8 activation scale (the scale of the Q/DQ pair a Conv reads) multiplied by each of
  ``--scales`` at four depths of the network (25 %, 45 %, 65 %, 85 % along its quantized Convs): the ratio at the
  planted tensor, and whether the rule names it first (caught), names an earlier tensor (false), or nothing
  (missed);
* for candidate factors, how many plants each catches and how many untouched graphs it would flag.

Configs: ``random_seed1`` (the zoo width, random weights seed 1, 64x128), ``narrow_seed2`` (PPM and auxiliary
head 32 channels, seed 2, 96x160), ``trained`` (samples/r18_os8_camvid_camvid.pth, 180x240). ONNX Runtime on
the CPU (INT8 as fake quantization, as `pspnet-trt debug` runs it). Writes
benchmarks/results/debug_factor_<host>_<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from bench_results import results_path

from pspnet_trt.artifacts import read_onnx_info
from pspnet_trt.bench import host
from pspnet_trt.debug.compare import EXACT_OPS, FACTOR, NOISE_FLOOR, Comparison, compare_layers, kind_of
from pspnet_trt.debug.core import load_images
from pspnet_trt.deploy import DeployInfo
from pspnet_trt.export import export_onnx
from pspnet_trt.files import write_json
from pspnet_trt.models import create_model
from pspnet_trt.quant import CalibrationList, quantize_onnx
from pspnet_trt.zoo import get_spec

ROOT = Path(__file__).resolve().parents[1]
MODEL = "r18_os8_camvid"
CANDIDATES = (2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0)
SITES = (0.25, 0.45, 0.65, 0.85)  # where along the quantized Convs a scale is planted
LOGITS = "/decoder/decoder.1/Conv_output_0"  # the classifier's output (before the resize to the input size)


def configs(checkpoint: Path) -> Dict[str, Dict[str, Any]]:
    return {
        "random_seed1": {"size": (64, 128), "model": lambda: create_model(MODEL, random_weights=True, seed=1),
                         "weights": "random, seed 1", "widths": "zoo (PPM 128, aux 64)"},
        "narrow_seed2": {"size": (96, 160), "weights": "random, seed 2", "widths": "PPM 32, aux 32",
                         "model": lambda: create_model(MODEL, random_weights=True, seed=2, ppm_channels=32,
                                                       aux_channels=32)},
        "trained": {"size": (180, 240), "model": lambda: create_model(MODEL, checkpoint), "weights": str(checkpoint),
                    "widths": "zoo (PPM 128, aux 64)"},
    }


def ratios(comparison: Comparison) -> List[Dict[str, Any]]:
    """Every tensor the rule looks at, in graph order, with ``ratio = growth / max(floor, median growth of the
    earlier tensors of its kind)``: the rule names the first tensor whose ratio exceeds its factor (a replica of
    ``first_divergence``'s loop, checked against it in :func:`run_one`). Up to the first tensor over a factor the
    medians do not depend on the factor, so "the first tensor over f" is exact for every candidate f."""
    floor = comparison.rule["floor"]
    noise: Dict[str, List[float]] = {}
    out = []
    for r in comparison.rows:
        if r.op in EXACT_OPS:
            continue
        earlier = noise.setdefault(kind_of(r), [])
        typical = statistics.median(earlier) if earlier else 0.0
        ratio = r.growth / max(floor, typical) if math.isfinite(r.growth) else math.inf
        out.append({"tensor": r.tensor, "artifact_tensor": r.artifact_tensor, "kind": kind_of(r), "growth": r.growth,
                    "typical": typical, "ratio": ratio, "rel_l2": r.rel_l2})
        earlier.append(r.growth)
    return out


def first_over(rows: Sequence[Dict[str, Any]], factor: float) -> Optional[Dict[str, Any]]:
    return next((r for r in rows if r["ratio"] > factor), None)


def run_one(reference: Path, artifact: Path, batches: Sequence[np.ndarray],
            names: Sequence[str]) -> Tuple[Comparison, List[Dict[str, Any]]]:
    ref_info, art_info = read_onnx_info(reference), read_onnx_info(artifact)
    comparison = compare_layers(reference, artifact, batches, names, ref_info, art_info)
    rows = ratios(comparison)
    mine = first_over(rows, comparison.rule["factor"])
    theirs = comparison.first_divergence
    if (mine is None) != (theirs is None) or (mine is not None and mine["tensor"] != theirs["tensor"]):
        raise RuntimeError(f"ratio replica disagrees with first_divergence: {mine} vs {theirs}")
    return comparison, rows


def summary(comparison: Comparison, rows: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    worst = max(comparison.rows, key=lambda r: r.rel_l2)
    top = max(rows, key=lambda r: r["ratio"])
    logits = next((r.rel_l2 for r in comparison.rows if r.tensor == LOGITS), None)
    qdq = [r["growth"] for r in rows if r["kind"] == "Q/DQ"]
    return {"max_ratio": top["ratio"], "max_ratio_tensor": top["tensor"],
            "first_divergence": comparison.first_divergence and comparison.first_divergence["tensor"],
            "worst_rel_l2": worst.rel_l2, "worst_rel_l2_tensor": worst.tensor, "logits_rel_l2": logits,
            "qdq_growth_median": statistics.median(qdq) if qdq else None, "qdq_growth_max": max(qdq) if qdq else None,
            "tensors": len(comparison.rows)}


def plant_sites(model: Any, fractions: Sequence[float]) -> List[Tuple[str, str, str]]:
    """(Conv name, its input DQ's output, the scale initializer of that Q/DQ pair) at ``fractions`` of the way
    along the Convs that read a Q/DQ pair."""
    producers = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name for i in model.graph.initializer}
    convs = []
    for n in model.graph.node:
        dq = producers.get(n.input[0]) if n.op_type == "Conv" else None
        q = producers.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is not None and q.op_type == "QuantizeLinear" and q.input[1] in inits:
            convs.append((n.name, dq.output[0], q.input[1]))
    return [convs[min(int(f * len(convs)), len(convs) - 1)] for f in fractions]


def planted(int8: Path, scale_name: str, factor: float, out: Path) -> Path:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(int8))
    init = next(i for i in model.graph.initializer if i.name == scale_name)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(factor), scale_name))
    onnx.save(model, str(out))
    return out


def run_config(name: str, cfg: Dict[str, Any], args: argparse.Namespace, work: Path) -> Dict[str, Any]:
    import onnx

    spec = get_spec(MODEL)
    info = DeployInfo.from_spec(spec, input_size=cfg["size"], output="labels")
    model = cfg["model"]()
    fp32 = export_onnx(model, info, work / f"{name}_fp32.onnx")
    fp16 = export_onnx(model, info, work / f"{name}_fp16.onnx", precision="fp16")
    train = sorted((Path(args.data) / "train").iterdir())
    calib = CalibrationList(Path(args.data), train[:: max(1, len(train) // args.calibration)][: args.calibration])
    int8 = quantize_onnx(fp32, calib, work / f"{name}_int8.onnx", "entropy")
    _, batches, names = load_images(read_onnx_info(fp32), args.data, args.images, None, args.split)
    result: Dict[str, Any] = {"input_size": list(cfg["size"]), "weights": cfg["weights"], "widths": cfg["widths"],
                              "images": list(names), "calibration_images": [p.name for p in calib.images],
                              "untouched": {}, "planted": []}
    untouched_rows = {}
    for precision, path in (("fp16", fp16), ("int8", int8)):
        t = time.perf_counter()
        comparison, rows = run_one(fp32, path, batches, names)
        untouched_rows[precision] = rows
        result["untouched"][precision] = {**summary(comparison, rows), "seconds": round(time.perf_counter() - t, 1)}
        print(name, precision, "untouched", result["untouched"][precision], flush=True)
    graph = onnx.load(str(int8))
    for conv, dq_out, scale in plant_sites(graph, args.sites):
        readers = sum(scale in n.input for n in graph.graph.node)  # the Q and the DQ of the pair: 2
        for s in args.scales:
            comparison, rows = run_one(fp32, planted(int8, scale, s, work / "planted.onnx"), batches, names)
            site = next(r for r in rows if r["artifact_tensor"] == dq_out)
            before = [r["ratio"] for r in rows[: rows.index(site)]]
            row = {"conv": conv, "scale_x": s, "scale_readers": readers, "ratio_at_plant": site["ratio"],
                   "growth_at_plant": site["growth"], "typical_before": site["typical"],
                   "max_ratio_before_plant": max(before) if before else 0.0,
                   "named": comparison.first_divergence and comparison.first_divergence["tensor"],
                   "caught": bool(comparison.first_divergence) and comparison.first_divergence["tensor"] == site["tensor"],
                   "worst_rel_l2": max(r.rel_l2 for r in comparison.rows),
                   "logits_rel_l2": next((r.rel_l2 for r in comparison.rows if r.tensor == LOGITS), None),
                   "by_factor": {}}
            for f in CANDIDATES:
                first = first_over(rows, f)
                row["by_factor"][str(f)] = "caught" if first is site else ("missed" if first is None else "false")
            result["planted"].append(row)
            print(name, conv, f"x{s}", {k: v for k, v in row.items() if k != "by_factor"}, flush=True)
    result["by_factor"] = {
        str(f): {"untouched_flagged": [p for p, rows in untouched_rows.items() if first_over(rows, f) is not None],
                 "caught": sum(r["by_factor"][str(f)] == "caught" for r in result["planted"]),
                 "false": sum(r["by_factor"][str(f)] == "false" for r in result["planted"]),
                 "missed": sum(r["by_factor"][str(f)] == "missed" for r in result["planted"])}
        for f in CANDIDATES}
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("CAMVID_ROOT"), help="CamVid root (default: $CAMVID_ROOT)")
    ap.add_argument("--split", default="val", help="images compared (default: val, not used to choose FACTOR)")
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--calibration", type=int, default=8, help="train images for the INT8 calibration")
    ap.add_argument("--scales", type=float, nargs="+", default=[2.0, 4.0, 8.0])
    ap.add_argument("--sites", type=float, nargs="+", default=list(SITES),
                    help="where to plant, as fractions of the way along the quantized Convs")
    ap.add_argument("--configs", nargs="+", default=["random_seed1", "narrow_seed2", "trained"])
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "samples" / "r18_os8_camvid_camvid.pth")
    ap.add_argument("--out", help="JSON path (default: benchmarks/results/debug_factor_<host>_<date>.json)")
    args = ap.parse_args()
    if not args.data:
        ap.error("--data (or CAMVID_ROOT) is required: the val split is what the rule was not chosen on")
    table = configs(args.checkpoint)
    unknown = sorted(set(args.configs) - set(table))
    if unknown:
        ap.error(f"unknown --configs {unknown}; choose from {sorted(table)}")
    result: Dict[str, Any] = {
        **host(), "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "factor": FACTOR, "noise_floor": NOISE_FLOOR,
        "split": args.split, "data": str(args.data), "configs": {}}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            result["configs"][name] = run_config(name, table[name], args, Path(tmp))
    result["seconds"] = round(time.perf_counter() - start)
    result["by_factor"] = {
        str(f): {k: sum(c["by_factor"][str(f)][k] for c in result["configs"].values())
                 for k in ("caught", "false", "missed")}
        | {"untouched_flagged": [f"{n} {p}" for n, c in result["configs"].items()
                                 for p in c["by_factor"][str(f)]["untouched_flagged"]]}
        for f in CANDIDATES}
    out = results_path("debug_factor", args.out)
    write_json(out, result)
    for f, row in result["by_factor"].items():
        print(f"factor {f}: {row}")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
