"""Issue 15 item 4: host time per frame in ``Segmenter.predict`` outside ``backend.run``, today's path vs
raw-frame artifacts, and the whole ``predict`` on ONNX Runtime CPU both ways.

    python benchmarks/host_overhead.py [--iters 5] [--threads 1]

Cases: a 1024x2048 camera frame into a 512x1024 network (19 classes, Cityscapes-like) and a 720x1280 frame
into 360x480 (11 classes, the CamVid demo model). Artifacts per case (r18_os8 PSPNet, random weights: the host
work does not depend on them): ``normalized`` with a labels output (today's default: host resize + normalise
+ transpose, nearest upsample of the labels), ``normalized`` with a logits output (host bilinear upsample of
C score maps, then argmax), and ``bgr8`` at the frame size (the frame is copied into the input, nothing else).
The artifacts run round-robin, so load from other jobs hits each alike.
Writes benchmarks/results/host_overhead_<host>_<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_results import results_path  # noqa: E402

from pspnet_trt.bench import host  # noqa: E402
from pspnet_trt.export import export_zoo  # noqa: E402
from pspnet_trt.files import write_json  # noqa: E402
from pspnet_trt.runtime import Segmenter  # noqa: E402

CASES = [("frame1024x2048_input512x1024", 19, (512, 1024), (1024, 2048)),
         ("frame720x1280_input360x480", 11, (360, 480), (720, 1280))]


def frame(hw: Any) -> np.ndarray:
    """A camera-like frame: CamVid test image if $CAMVID_ROOT is set (resized), else smooth noise."""
    import cv2

    root = os.environ.get("CAMVID_ROOT")
    images = sorted((Path(root) / "test").glob("*.png")) if root else []
    if images:
        return cv2.resize(cv2.imread(str(images[0])), (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(0, 256, (*hw, 3), dtype=np.uint8), (0, 0), 3)


class Timed:
    """A Segmenter whose backend.run is timed, so host time = predict time - backend time."""

    def __init__(self, path: Path, threads: int) -> None:
        self.seg = Segmenter.open(path, threads=threads)
        self.run = self.seg.backend.run
        self.backend_s: List[float] = []
        self.total: List[float] = []
        self.host: List[float] = []
        self.seg.backend.run = self._timed  # type: ignore[method-assign]

    def _timed(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        t = time.perf_counter()
        out = self.run(batch)
        self.backend_s.append(time.perf_counter() - t)
        return out

    def once(self, image: np.ndarray) -> None:
        self.backend_s.clear()
        t = time.perf_counter()
        labels = self.seg.predict(image)
        dt = time.perf_counter() - t
        assert labels.shape == image.shape[:2]
        self.total.append(dt * 1e3)
        self.host.append((dt - sum(self.backend_s)) * 1e3)

    def summary(self) -> Dict[str, Any]:
        return {"host_ms_p50": statistics.median(self.host), "host_ms_min": min(self.host),
                "predict_ms_p50": statistics.median(self.total),
                "backend_ms_p50": statistics.median(t - h for t, h in zip(self.total, self.host)), "iters": len(self.host)}


def float_resize_graph(fsize, net, norm, out: Path) -> Path:
    """The price of bit-exactness: the preprocessing with one float bilinear Resize (half-pixel, no antialias)
    instead of OpenCV's fixed-point arithmetic (what the bgr8 graph did before; up to 0.63 grey levels off)."""
    import torch
    import torch.nn.functional as F

    mean, std = torch.tensor(norm.mean).view(1, 3, 1, 1), torch.tensor(norm.std).view(1, 3, 1, 1)

    class FloatResize(torch.nn.Module):
        def forward(self, images):
            x = images.to(torch.float32).permute(0, 3, 1, 2).flip(1)
            return (F.interpolate(x, size=net, mode="bilinear", align_corners=False) - mean) / std

    torch.onnx.export(FloatResize(), (torch.zeros(1, *fsize, 3, dtype=torch.uint8),), str(out), dynamo=False,
                      opset_version=17, input_names=["images"])
    return out


def preprocess_only(args: argparse.Namespace) -> Dict[str, Any]:
    """What moved into the graph, alone: today's host preprocessing (make_batch) vs the bgr8 graph's
    preprocessing subgraph (frame -> network input) on ONNX Runtime CPU, and vs a float-Resize version of it
    (:func:`float_resize_graph`), round-robin, no network."""
    import onnx.utils
    import onnxruntime as ort

    from pspnet_trt.artifacts import read_onnx_info
    from pspnet_trt.preprocess import make_batch

    tmp = Path(tempfile.mkdtemp(prefix="host_overhead_pre_"))
    rows = []
    for name, classes, net, fsize in CASES:
        image = frame(fsize)
        path = export_zoo(args.model, tmp / f"{name}_bgr8.onnx", input_size=net, num_classes=classes,
                          input_format="bgr8", frame_size=fsize, random_weights=True)
        model = onnx.load(str(path))
        tensor = next(n for n in model.graph.node if n.op_type == "Conv").input[0]
        onnx.utils.extract_model(str(path), str(tmp / "pre.onnx"), ["images"], [tensor])
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(str(tmp / "pre.onnx"), options, providers=["CPUExecutionProvider"])
        info = read_onnx_info(path)
        float_sess = ort.InferenceSession(str(float_resize_graph(fsize, net, info.normalization, tmp / "float.onnx")),
                                          options, providers=["CPUExecutionProvider"])
        host, graph, float_graph = [], [], []
        for _ in range(args.iters + 1):
            t = time.perf_counter()
            want = make_batch([image], net, info.normalization)
            host.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            got = sess.run(None, {"images": image[None]})[0]
            graph.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            float_sess.run(None, {"images": image[None]})
            float_graph.append((time.perf_counter() - t) * 1e3)
        row = {"case": name, "host_make_batch_ms_p50": statistics.median(host[1:]),
               "graph_preprocess_ort_cpu_ms_p50": statistics.median(graph[1:]),
               "graph_float_resize_ort_cpu_ms_p50": statistics.median(float_graph[1:]),
               "graph_equals_host_path": bool(np.array_equal(got, want)), "iters": args.iters}
        print(row, flush=True)
        rows.append(row)
    return {"benchmark": "host_overhead_preprocess_only", "threads": args.threads, "rows": rows,
            "host": {"name": socket.gethostname(), "cpus": os.cpu_count(), "note": "2-core machine shared with other jobs"},
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}


def run(args: argparse.Namespace) -> Dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="host_overhead_"))
    rows = []
    for name, classes, net, fsize in CASES:
        image = frame(fsize)
        common = dict(input_size=net, num_classes=classes, random_weights=True)
        arts = {
            "normalized_labels (today's default)": export_zoo(args.model, tmp / f"{name}_labels.onnx", **common),
            "normalized_logits (today)": export_zoo(args.model, tmp / f"{name}_logits.onnx", output="logits", **common),
            "bgr8 (raw frame)": export_zoo(args.model, tmp / f"{name}_bgr8.onnx", input_format="bgr8", frame_size=fsize,
                                           **common),
        }
        row: Dict[str, Any] = {"case": name, "classes": classes, "input_size": list(net), "frame_size": list(fsize)}
        timed = {label: Timed(path, args.threads) for label, path in arts.items()}
        for t in timed.values():
            t.seg.predict(image)  # warm-up
        for _ in range(args.iters):  # round-robin: a shared machine's load hits every artifact alike
            for t in timed.values():
                t.once(image)
        for label, t in timed.items():
            row[label] = t.summary()
            t.seg.close()
            print(name, label, row[label], flush=True)
        today = row["normalized_labels (today's default)"]["host_ms_p50"]
        row["host_speedup_vs_today"] = today / max(row["bgr8 (raw frame)"]["host_ms_p50"], 1e-9)
        rows.append(row)
    return {"benchmark": "host_overhead", "model": args.model, "weights": "random (host work does not depend on them)",
            "threads": args.threads, "rows": rows,
            **host(), "note": "2-core machine shared with other jobs",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="r18_os8_camvid")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--preprocess-only", action="store_true",
                   help="time only today's host preprocessing vs the bgr8 graph's preprocessing subgraph")
    p.add_argument("--out")
    args = p.parse_args()
    data = preprocess_only(args) if args.preprocess_only else run(args)
    out = results_path("host_overhead", args.out)
    write_json(out, data)
    print(out)


if __name__ == "__main__":
    main()
