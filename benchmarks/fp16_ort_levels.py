"""Does ONNX Runtime's graph optimization level change an FP16 graph's labels on the CPU? (The validator runs FP16
graphs with optimizations on; INT8 graphs for TensorRT run with them off, see runtime/ort.py.)

    CAMVID_ROOT=... python benchmarks/fp16_ort_levels.py --checkpoint samples/r18_os8_camvid_camvid.pth [--images 20]

Exports the FP32 and FP16 ONNX of r18_os8_camvid at 360x480, runs every --images-th CamVid test image through the
FP32 graph (level ALL) and the FP16 graph at levels ALL, BASIC and DISABLE_ALL (1 thread each), and reports each
level's labels agreement with FP32, the agreement between levels and the median seconds an image.
Writes benchmarks/results/fp16_ort_levels_<host>_<date>.json (or --out).
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

from bench_results import results_path

from pspnet_trt.bench import host
from pspnet_trt.data import dataset_for_spec
from pspnet_trt.export import export_zoo
from pspnet_trt.files import write_json
from pspnet_trt.preprocess import make_batch
from pspnet_trt.zoo import get_spec

ROOT = Path(__file__).resolve().parents[1]
LEVELS = ("ORT_ENABLE_ALL", "ORT_ENABLE_BASIC", "ORT_DISABLE_ALL")


def main() -> int:
    import onnxruntime as ort

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", default=os.environ.get("CAMVID_ROOT"))
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if not args.data:
        ap.error("pass --data or set CAMVID_ROOT")
    spec = get_spec("r18_os8_camvid")
    dataset = dataset_for_spec(spec, args.data, spec.eval_split)
    step = max(1, len(dataset) // args.images)
    indices = list(range(0, len(dataset), step))[: args.images]
    tmp = Path(tempfile.mkdtemp(prefix="fp16_levels_"))
    paths = {p: export_zoo(spec.name, tmp / f"{p}.onnx", checkpoint=args.checkpoint, precision=p, output="labels")
             for p in ("fp32", "fp16")}

    def session(path: Path, level: str):
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.log_severity_level = 1, 3
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    reference = session(paths["fp32"], "ORT_ENABLE_ALL")
    fp16 = {level: session(paths["fp16"], level) for level in LEVELS}
    agree: dict = {level: [] for level in LEVELS}
    between: dict = {level: [] for level in LEVELS[1:]}
    seconds: dict = {level: [] for level in LEVELS}
    for i in indices:
        image = dataset[i].image
        x = make_batch([image], spec.deploy_size, spec.normalization)
        ref = reference.run(None, {"images": x})[0]
        labels = {}
        for level, s in fp16.items():
            t = time.perf_counter()
            labels[level] = s.run(None, {"images": x})[0]
            seconds[level].append(time.perf_counter() - t)
            agree[level].append(float((labels[level] == ref).mean()))
        for level in LEVELS[1:]:
            between[level].append(float((labels[level] == labels[LEVELS[0]]).mean()))
    result = {
        **host(), "date": datetime.date.today().isoformat(), "command": " ".join(sys.argv),
        "checkpoint": args.checkpoint, "input_size": list(spec.deploy_size), "images": len(indices),
        "agreement_with_fp32_pct": {k: round(100 * statistics.mean(v), 4) for k, v in agree.items()},
        "agreement_with_level_all_pct": {k: round(100 * statistics.mean(v), 4) for k, v in between.items()},
        "seconds_per_image_p50": {k: round(statistics.median(v), 4) for k, v in seconds.items()},
    }
    out = results_path("fp16_ort_levels", args.out)
    write_json(out, result)
    print(result)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
