"""Issue 15 item 3 (and the frame-upsample choice of item 1): raw-frame (bgr8) ONNX vs the normalised ONNX
fed by today's host path, on the CamVid test set, for FP32, FP16 and INT8.

    CAMVID_ROOT=... python benchmarks/raw_frame_parity.py --checkpoint samples/r18_os8_camvid_camvid.pth \
        [--input-size 240x320] [--limit N] [--precisions fp32 fp16 int8] [--threads 1]

Each test image (360x480) is the camera frame. The network runs at ``--input-size`` (default 240x320, a
non-integer 1.5x downscale, so the in-graph resize really works). Pairs compared, per precision:

* ``labels`` mode: the bgr8 graph with frame_upsample=labels vs the normalized graph's labels output fed by
  ``make_batch`` (cv2 uint8 resize + normalise) and brought to the image by nearest neighbour (today's default);
* ``logits`` mode: the bgr8 graph with frame_upsample=logits (bilinear scores straight to the frame, then ArgMax)
  vs the normalized graph's logits output brought to the image bilinearly by the host (``logits_to_labels``).

Also: how far the network inputs differ (the in-graph resize vs cv2.resize on the uint8 frame) in grey levels,
and where the labels differ (share of differing pixels on a class boundary of the reference prediction).
INT8: each graph quantized from its own FP32 twin with the same calibration list (``--calib-images`` train
images). Writes benchmarks/results/raw_frame_parity_<host>_<date>.json.
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

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_results import results_path  # noqa: E402

from pspnet_trt.artifacts import read_onnx_info  # noqa: E402
from pspnet_trt.bench import host  # noqa: E402
from pspnet_trt.data import dataset_for_spec  # noqa: E402
from pspnet_trt.export import export_zoo  # noqa: E402
from pspnet_trt.files import write_json  # noqa: E402
from pspnet_trt.metrics import SegMetrics  # noqa: E402
from pspnet_trt.preprocess import logits_to_labels, make_batch, resize_labels  # noqa: E402
from pspnet_trt.sizes import parse_size  # noqa: E402
from pspnet_trt.zoo import get_spec  # noqa: E402

MODES = ("labels", "logits")


def session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def boundary(labels: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood holds more than one class."""
    k = np.ones((3, 3), np.uint8)
    return cv2.dilate(labels, k) != cv2.erode(labels, k)


def probe_model(path: Path, out: Path) -> Path:
    """The preprocessing of a bgr8 graph alone: frame in, network input (what the first Conv reads) out."""
    import onnx
    import onnx.utils

    m = onnx.load(str(path))
    tensor = next(n for n in m.graph.node if n.op_type == "Conv").input[0]
    onnx.utils.extract_model(str(path), str(out), ["images"], [tensor])
    return out


def run(args: argparse.Namespace) -> Dict[str, Any]:
    root = args.data or os.environ.get("CAMVID_ROOT")
    if not root:
        raise SystemExit("set CAMVID_ROOT or pass --data")
    spec = get_spec(args.model)
    dataset = dataset_for_spec(spec, root, spec.eval_split)
    n = min(args.limit or len(dataset), len(dataset))
    size = parse_size(args.input_size)
    frame = dataset[0].image.shape[:2]
    tmp = Path(tempfile.mkdtemp(prefix="raw_parity_"))
    ckpt = args.checkpoint
    common = dict(checkpoint=ckpt, input_size=size, random_weights=ckpt is None)
    files: Dict[str, Dict[str, Path]] = {}
    t0 = time.perf_counter()
    def modes_for(precision: str) -> List[str]:
        return list(args.modes) if precision == "fp32" or not args.float_modes else list(args.float_modes)

    for precision in ("fp32", "fp16"):
        if precision not in args.precisions and not (precision == "fp32" and "int8" in args.precisions):
            continue
        files[precision] = {"normalized": export_zoo(args.model, tmp / f"norm_{precision}.onnx", output="both",
                                                     precision=precision, **common)}
        wanted = set(modes_for(precision)) | (set(modes_for("int8")) if precision == "fp32" else set())
        for mode in [m for m in MODES if m in wanted]:
            files[precision][mode] = export_zoo(args.model, tmp / f"bgr8_{mode}_{precision}.onnx", precision=precision,
                                                input_format="bgr8", frame_size=frame, frame_upsample=mode, **common)
    if "int8" in args.precisions:
        from pspnet_trt.quant import CalibrationList, make_calibration_list, quantize_onnx

        cal = CalibrationList.read(make_calibration_list(args.model, root, spec.train_split, args.calib_images, 0,
                                                         out=tmp / "cal.txt", input_size=size), root)
        files["int8"] = {k: quantize_onnx(v, cal, tmp / f"{k}_int8.onnx") for k, v in files["fp32"].items()
                         if k == "normalized" or k in modes_for("int8")}
    export_s = time.perf_counter() - t0
    results: Dict[str, Any] = {}
    info = None
    for precision in args.precisions:
        modes = modes_for(precision)
        sess = {k: session(v, args.threads) for k, v in files[precision].items() if k == "normalized" or k in modes}
        probe = session(probe_model(files[precision][modes[0]], tmp / f"probe_{precision}.onnx"), args.threads) \
            if precision == "fp32" else None
        metrics = {k: SegMetrics(spec.num_classes) for k in ("host_labels", "host_logits", *modes)}
        same = {m: [0, 0] for m in modes}
        on_boundary = {m: 0 for m in modes}
        input_diff: List[float] = []
        input_mean: List[float] = []
        input_over_half = [0, 0]
        for i in range(n):
            if i and i % 25 == 0:
                print(f"{precision}: {i}/{n} images, agreement so far "
                      f"{ {m: round(100.0 * v[0] / v[1], 3) for m, v in same.items()} }", flush=True)
            sample = dataset[i]
            info = info or read_onnx_info(files[precision]["normalized"])
            batch = make_batch([sample.image], size, info.normalization)
            logits, labels = sess["normalized"].run(["logits", "labels"], {"images": batch})
            host_pred = {"labels": resize_labels(labels[0].astype(np.uint8), frame),
                    "logits": logits_to_labels(logits[0], frame)}
            metrics["host_labels"].update(host_pred["labels"], sample.label)
            metrics["host_logits"].update(host_pred["logits"], sample.label)
            for mode in modes:
                got = sess[mode].run(None, {"images": sample.image[None]})[0][0]
                metrics[mode].update(got, sample.label)
                diff = got != host_pred[mode]
                same[mode][0] += int((~diff).sum())
                same[mode][1] += diff.size
                on_boundary[mode] += int((diff & boundary(host_pred[mode])).sum())
            if probe is not None:
                net_in = probe.run(None, {"images": sample.image[None]})[0][0]
                grey = np.abs(net_in - batch[0]) * np.asarray(info.normalization.std, np.float32)[:, None, None]
                input_diff.append(float(grey.max()))
                input_over_half[0] += int((grey > 0.5).sum())
                input_over_half[1] += grey.size
                input_mean.append(float(grey.mean()))
        row: Dict[str, Any] = {"images": n}
        for mode in modes:
            host_key = f"host_{mode}"
            differing = same[mode][1] - same[mode][0]
            row[mode] = {
                "agreement_pct": 100.0 * same[mode][0] / same[mode][1],
                "miou_raw_frame": 100.0 * metrics[mode].miou,
                "miou_host_path": 100.0 * metrics[host_key].miou,
                "miou_delta": 100.0 * (metrics[mode].miou - metrics[host_key].miou),
                "differing_pixels": differing,
                "differing_on_class_boundary_pct": 100.0 * on_boundary[mode] / differing if differing else None,
            }
        if input_diff:
            row["network_input_grey_levels"] = {
                "what": "|in-graph resize - cv2.resize of the uint8 frame| of the network input, in 0..255 units",
                "max": max(input_diff), "mean": float(np.mean(input_mean)),
                "share_over_half_level_pct": 100.0 * input_over_half[0] / input_over_half[1],
            }
        results[precision] = row
        print(precision, {k: v for k, v in row.items() if k != "images"}, flush=True)
    return {
        "benchmark": "raw_frame_parity", "model": args.model,
        "checkpoint": str(ckpt) if ckpt else "RANDOM weights (meaningless mIoU; agreement still a numerics check)",
        "frame_size": list(frame), "input_size": list(size), "split": spec.eval_split, "calib_images": args.calib_images,
        "threads": args.threads, "export_and_quantize_s": round(export_s, 1), "results": results,
        **host(), "note": "2-core machine shared with other jobs",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="r18_os8_camvid")
    p.add_argument("--checkpoint", help="trained checkpoint (default: random weights)")
    p.add_argument("--data", help="dataset root (default: $CAMVID_ROOT)")
    p.add_argument("--input-size", default="240x320")
    p.add_argument("--limit", type=int, help="first N test images (default: all)")
    p.add_argument("--precisions", nargs="+", default=["fp32", "fp16", "int8"], choices=["fp32", "fp16", "int8"])
    p.add_argument("--calib-images", type=int, default=16)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES, help="frame_upsample modes to compare")
    p.add_argument("--float-modes", nargs="+", choices=MODES,
                   help="modes for fp16/int8 (default: --modes); e.g. only the default mode to save time")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="JSON path (default: benchmarks/results/raw_frame_parity_<host>_<date>.json)")
    args = p.parse_args()
    data = run(args)
    out = results_path("raw_frame_parity", args.out)
    write_json(out, data)
    print(out)


if __name__ == "__main__":
    main()
