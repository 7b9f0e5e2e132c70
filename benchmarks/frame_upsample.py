"""Issue 15 item 1: cost of bringing a raw-frame graph's prediction to the frame size, two ways.

    python benchmarks/frame_upsample.py [--iters 10] [--threads 1]

* ``logits``: Resize (bilinear) of the C class-score maps from the head's output (stride 8) straight to the
  frame, then ArgMax (sssegmentation's test-time way);
* ``labels``: Resize (bilinear) of the scores to the network input size, ArgMax there, then a nearest
  Resize of the one-channel label map to the frame (what the host does today for a labels artifact).

Only this tail of the graph is built and timed (ONNX Runtime CPU, the same ops the export writes), plus the
bytes its intermediate tensors take when each op writes its output once and the next reads it (no fusion;
TensorRT may fuse Resize+ArgMax, so this is the upper bound a Jetson's memory bus sees), in FP32 and FP16
scores. mIoU of the two modes comes from benchmarks/raw_frame_parity.py. Writes
benchmarks/results/frame_upsample_<host>_<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_results import results_path  # noqa: E402

from pspnet_trt.bench import host  # noqa: E402
from pspnet_trt.files import write_json  # noqa: E402

# (name, classes, network input HxW, frame HxW): Cityscapes R-50 deploy size on a 2 MP camera; CamVid demo on 720p
CASES = [("cityscapes_512x1024_frame1024x2048", 19, (512, 1024), (1024, 2048)),
         ("camvid_360x480_frame720x1280", 11, (360, 480), (720, 1280))]


def tail_graph(mode: str, classes: int, feat: Tuple[int, int], net: Tuple[int, int], frame: Tuple[int, int]) -> Any:
    from onnx import TensorProto, helper

    def sizes(name: str, hw: Tuple[int, int], c: int) -> Any:
        return helper.make_tensor(name, TensorProto.INT64, [4], [1, c, *hw])

    nodes, inits = [], []
    if mode == "logits":
        inits.append(sizes("frame_sizes", frame, classes))
        nodes += [helper.make_node("Resize", ["logits", "", "", "frame_sizes"], ["up"], mode="linear",
                                   coordinate_transformation_mode="pytorch_half_pixel"),
                  helper.make_node("ArgMax", ["up"], ["idx"], axis=1, keepdims=0),
                  helper.make_node("Cast", ["idx"], ["labels"], to=TensorProto.UINT8)]
    else:
        inits += [sizes("net_sizes", net, classes), sizes("frame_sizes", frame, 1)]
        nodes += [helper.make_node("Resize", ["logits", "", "", "net_sizes"], ["up"], mode="linear",
                                   coordinate_transformation_mode="pytorch_half_pixel"),
                  helper.make_node("ArgMax", ["up"], ["idx"], axis=1, keepdims=1),
                  helper.make_node("Cast", ["idx"], ["idx_f"], to=TensorProto.FLOAT),
                  helper.make_node("Resize", ["idx_f", "", "", "frame_sizes"], ["near"], mode="nearest",
                                   coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
                  helper.make_node("Squeeze", ["near", "axes"], ["sq"]),
                  helper.make_node("Cast", ["sq"], ["labels"], to=TensorProto.UINT8)]
        inits.append(helper.make_tensor("axes", TensorProto.INT64, [1], [1]))
    graph = helper.make_graph(nodes, mode, [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes, *feat])],
                              [helper.make_tensor_value_info("labels", TensorProto.UINT8, [1, *frame])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def traffic_mb(mode: str, classes: int, feat: Tuple[int, int], net: Tuple[int, int], frame: Tuple[int, int],
               score_bytes: int) -> float:
    """Bytes written + read by the tail's intermediate tensors (each written once and read once), in MB."""
    fh, fw = frame
    if mode == "logits":
        scores = classes * fh * fw * score_bytes  # upsampled scores at the frame size
        return (classes * feat[0] * feat[1] * score_bytes + 2 * scores + fh * fw) / 1e6
    nh, nw = net
    scores = classes * nh * nw * score_bytes
    return (classes * feat[0] * feat[1] * score_bytes + 2 * scores + 2 * nh * nw * 4 + fh * fw) / 1e6


def run(args: argparse.Namespace) -> Dict[str, Any]:
    import onnxruntime as ort

    rows = []
    for name, classes, net, frame in CASES:
        feat = ((net[0] + 7) // 8, (net[1] + 7) // 8)
        logits = np.random.default_rng(0).standard_normal((1, classes, *feat)).astype(np.float32)
        row: Dict[str, Any] = {"case": name, "classes": classes, "input_size": list(net), "frame_size": list(frame),
                               "feature_size": list(feat)}
        outputs = {}
        for mode in ("logits", "labels"):
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            options.log_severity_level = 3
            sess = ort.InferenceSession(tail_graph(mode, classes, feat, net, frame).SerializeToString(), options,
                                        providers=["CPUExecutionProvider"])
            outputs[mode] = sess.run(None, {"logits": logits})[0]
            times = []
            for _ in range(args.iters):
                t = time.perf_counter()
                sess.run(None, {"logits": logits})
                times.append((time.perf_counter() - t) * 1e3)
            row[mode] = {"ort_cpu_ms_p50": statistics.median(times),
                         "traffic_mb_fp32_scores": traffic_mb(mode, classes, feat, net, frame, 4),
                         "traffic_mb_fp16_scores": traffic_mb(mode, classes, feat, net, frame, 2)}
        row["labels_vs_logits_agreement_pct_random_scores"] = 100.0 * float((outputs["logits"] == outputs["labels"]).mean())
        row["ratio_ms_logits_over_labels"] = row["logits"]["ort_cpu_ms_p50"] / row["labels"]["ort_cpu_ms_p50"]
        print(name, row, flush=True)
        rows.append(row)
    return {"benchmark": "frame_upsample", "iters": args.iters, "threads": args.threads, "rows": rows,
            **host(), "note": "2-core machine shared with other jobs",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out")
    args = p.parse_args()
    data = run(args)
    out = results_path("frame_upsample", args.out)
    write_json(out, data)
    print(out)


if __name__ == "__main__":
    main()
