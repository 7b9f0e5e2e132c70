"""Issue 15 item 5: `pspnet-trt predict` on a video, pipelined (decode thread -> queue -> inference -> queue ->
encode thread) vs a plain loop, frames per second on this CPU.

    CAMVID_ROOT=... python benchmarks/stream_fps.py --checkpoint samples/r18_os8_camvid_camvid.pth [--frames 40]

The video is made here from the first ``--frames`` CamVid test images (360x480, mp4v, 30 fps); the model is
r18_os8_camvid at 360x480 exported as a raw-frame (bgr8) ONNX and as today's normalized ONNX, run with ONNX
Runtime on ``--threads`` threads. Writes benchmarks/results/stream_fps_<host>_<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_results import results_path  # noqa: E402

from pspnet_trt.bench import host  # noqa: E402
from pspnet_trt.export import export_zoo  # noqa: E402
from pspnet_trt.files import write_json  # noqa: E402
from pspnet_trt.runtime import Segmenter  # noqa: E402
from pspnet_trt.runtime.streams import open_source, run_pipeline, run_plain  # noqa: E402


def make_video(root: Path, n: int, out: Path) -> Path:
    images = sorted((root / "test").glob("*.png"))[:n]
    first = cv2.imread(str(images[0]))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (first.shape[1], first.shape[0]))
    for p in images:
        writer.write(cv2.imread(str(p)))
    writer.release()
    return out


def run(args: argparse.Namespace) -> Dict[str, Any]:
    root = Path(args.data or os.environ.get("CAMVID_ROOT") or "")
    if not (root / "test").is_dir():
        raise SystemExit("set CAMVID_ROOT or pass --data")
    tmp = Path(tempfile.mkdtemp(prefix="stream_fps_"))
    video = make_video(root, args.frames, tmp / "camvid_test.mp4")
    frame = cv2.imread(str(sorted((root / "test").glob("*.png"))[0])).shape[:2]
    weights = dict(checkpoint=args.checkpoint, random_weights=args.checkpoint is None)
    arts = {"bgr8": export_zoo("r18_os8_camvid", tmp / "bgr8.onnx", input_format="bgr8", frame_size=frame, **weights),
            "normalized": export_zoo("r18_os8_camvid", tmp / "norm.onnx", **weights)}
    source = open_source([str(video)])
    rows: Dict[str, Any] = {}
    for label, path in arts.items():
        with Segmenter.open(path, threads=args.threads) as seg:
            seg.predict(cv2.imread(str(sorted((root / "test").glob("*.png"))[0])))  # warm-up
            plain = run_plain(seg, source, tmp / f"{label}_plain", progress=False)
            piped = run_pipeline(seg, source, tmp / f"{label}_pipe", queue_size=args.queue, progress=False)
        rows[label] = {"plain_fps": plain.fps, "pipelined_fps": piped.fps, "speedup": piped.fps / plain.fps,
                       "frames": piped.frames}
        print(label, rows[label], flush=True)
    return {"benchmark": "stream_fps", "model": "r18_os8_camvid", "input_size": [360, 480], "frame_size": list(frame),
            "checkpoint": args.checkpoint or "random weights", "frames": args.frames, "threads": args.threads,
            "queue": args.queue, "results": rows,
            **host(), "note": "2-core machine shared with other jobs",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="trained checkpoint (default: random weights)")
    p.add_argument("--data")
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--queue", type=int, default=4)
    p.add_argument("--out")
    args = p.parse_args()
    data = run(args)
    out = results_path("stream_fps", args.out)
    write_json(out, data)
    print(out)


if __name__ == "__main__":
    main()
