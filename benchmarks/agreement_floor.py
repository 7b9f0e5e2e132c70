"""Where the gate's agreement floors come from (pspnet_trt/validate/gate.py: AGREEMENT_FLOORS): the pixel agreement
of clean artifacts with their PyTorch reference, per precision, over every artifact kind the project writes.

    CAMVID_ROOT=... python benchmarks/agreement_floor.py --checkpoint samples/r18_os8_camvid_camvid.pth \
        [--sizes 360x480 240x320 180x240] [--limit 20] [--calib-images 32] [--threads 2]

For each network input size: FP32 and FP16 exports of every kind (normalized input with a logits and with a
labels output; pixels input, logits output (probabilities); bgr8 raw frames at the CamVid frame size 360x480 with
``frame_upsample`` logits and labels) and the INT8 graph of each FP32 one (``quantize_onnx``, calibrated on
``--calib-images`` training images, seed 0). All of a size are scored by ``validate`` itself on the first
``--limit`` test images: each artifact's agreement with its own PyTorch reference (``reference_for``), its mIoU and
the change vs PyTorch. A control the gate must fail: the FP32 normalized logits graph with its final Resize
switched from linear to nearest. Writes benchmarks/results/agreement_floor_<host>_<date>.json (after each size).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_results import results_path  # noqa: E402

from pspnet_trt.bench import host  # noqa: E402
from pspnet_trt.data import dataset_for_spec  # noqa: E402
from pspnet_trt.export import export_zoo  # noqa: E402
from pspnet_trt.files import write_json  # noqa: E402
from pspnet_trt.sizes import parse_size  # noqa: E402
from pspnet_trt.zoo import get_spec  # noqa: E402

# kind -> export options
KINDS: Dict[str, Dict[str, Any]] = {
    "normalized-logits": {"output": "logits"},
    "normalized-labels": {"output": "labels"},
    "pixels-logits": {"output": "logits", "input_format": "pixels"},
    "bgr8-upsample-labels": {"output": "labels", "input_format": "bgr8", "frame_upsample": "labels"},
    "bgr8-upsample-logits": {"output": "labels", "input_format": "bgr8", "frame_upsample": "logits"},
}


def nearest_final_resize(src: Path, out: Path) -> Path:
    """``src`` with its last Resize (the logits to the input size) switched from linear to nearest: a wrong graph
    whose mIoU stays at PyTorch's."""
    import onnx

    model = onnx.load(str(src))
    last = [n for n in model.graph.node if n.op_type == "Resize"][-1]
    for a in last.attribute:
        if a.name == "mode":
            a.s = b"nearest"
    onnx.save(model, str(out))
    return out


def run(args: argparse.Namespace, out: Path) -> Dict[str, Any]:
    from pspnet_trt.quant import CalibrationList, make_calibration_list, quantize_onnx
    from pspnet_trt.runtime.ort import OrtBackend
    from pspnet_trt.runtime.torch_backend import TorchBackend
    from pspnet_trt.validate import validate

    root = args.data or os.environ.get("CAMVID_ROOT")
    if not root:
        raise SystemExit("set CAMVID_ROOT or pass --data")
    spec = get_spec(args.model)
    test = dataset_for_spec(spec, root, spec.eval_split)
    frame = tuple(test[0].image.shape[:2])
    tmp = Path(tempfile.mkdtemp(prefix="agreement_floor_"))
    result: Dict[str, Any] = {
        "benchmark": "agreement_floor", "model": args.model, "checkpoint": str(args.checkpoint),
        "split": spec.eval_split, "images": args.limit, "calib_images": args.calib_images, "frame_size": list(frame),
        "threads": args.threads, "sizes": {}, **host(), "note": "2-core machine shared with other jobs",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/agreement_floor.py", *sys.argv[1:]]),
    }
    for text in args.sizes:
        size = parse_size(text)
        t0 = time.perf_counter()
        files: Dict[str, Path] = {}
        cal = CalibrationList.read(make_calibration_list(args.model, root, spec.train_split, args.calib_images, 0,
                                                         out=tmp / f"cal_{text}.txt", input_size=size), root)
        for kind, options in KINDS.items():
            fmt = dict(options)
            if fmt.get("input_format") == "bgr8":
                fmt["frame_size"] = frame
            for precision in ("fp32", "fp16"):
                files[f"{kind} {precision}"] = export_zoo(args.model, tmp / f"{text}_{kind}_{precision}.onnx",
                                                          checkpoint=args.checkpoint, input_size=size,
                                                          precision=precision, **fmt)
            files[f"{kind} int8"] = quantize_onnx(files[f"{kind} fp32"], cal, tmp / f"{text}_{kind}_int8.onnx")
        files["CONTROL nearest final Resize fp32"] = nearest_final_resize(
            files["normalized-logits fp32"], tmp / f"{text}_nearest_fp32.onnx")
        build_s = time.perf_counter() - t0
        print(f"{text}: {len(files)} artifacts built in {build_s:.0f} s", flush=True)
        reference = TorchBackend.from_zoo(args.model, checkpoint=args.checkpoint, device="cpu", input_size=size,
                                          output="logits", threads=args.threads)
        backends = [OrtBackend(p, device="cpu", threads=args.threads) for p in files.values()]
        t0 = time.perf_counter()
        report = validate(reference, backends, test, labels=list(files), limit=args.limit, progress=False)
        for b in backends:
            b.close()
        rows: List[Dict[str, Any]] = [{k: r.get(k) for k in ("backend", "precision", "output", "miou", "delta",
                                                              "agreement", "invalid_pixels", "passed", "why")}
                                      for r in report.rows]
        lowest = {p: min(r["agreement"] for r in rows[1:] if r["precision"] == p and "CONTROL" not in r["backend"])
                  for p in ("fp32", "fp16", "int8")}
        result["sizes"][text] = {"input_size": list(size), "build_s": round(build_s, 1),
                                 "validate_s": round(time.perf_counter() - t0, 1), "pytorch_miou": rows[0]["miou"],
                                 "lowest_agreement": lowest, "rows": rows}
        for r in rows[1:]:
            print(f"  {r['backend']:40s} agreement {r['agreement']:.3f} %  mIoU {r['miou']:.2f} ({r['delta']:+.2f})"
                  f"  {'pass' if r['passed'] else 'FAIL ' + '; '.join(r['why'])}", flush=True)
        result["lowest_agreement"] = {p: min(s["lowest_agreement"][p] for s in result["sizes"].values())
                                      for p in ("fp32", "fp16", "int8")}
        write_json(out, result)
        print(f"{text}: lowest agreement per precision {lowest}; written {out}", flush=True)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="r18_os8_camvid")
    p.add_argument("--checkpoint", required=True, help="trained checkpoint (samples/r18_os8_camvid_camvid.pth)")
    p.add_argument("--data", help="dataset root (default: $CAMVID_ROOT)")
    p.add_argument("--sizes", nargs="+", default=["360x480", "240x320", "180x240"])
    p.add_argument("--limit", type=int, default=20, help="first N test images (20)")
    p.add_argument("--calib-images", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="JSON path (default: benchmarks/results/agreement_floor_<host>_<date>.json)")
    args = p.parse_args()
    run(args, results_path("agreement_floor", args.out))


if __name__ == "__main__":
    main()
