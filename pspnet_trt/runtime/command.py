"""``pspnet-trt predict``: run a Segmenter on images, a folder, a video, a camera or a stream; write overlays."""

from __future__ import annotations

import argparse

from ..values import unit_interval


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="segment images, a folder, a video file, a camera or an RTSP/HTTP stream")
    p.add_argument("--model", required=True, help=".onnx, .engine (with its manifest) or zoo name")
    p.add_argument("--checkpoint", help="checkpoint for a zoo name (PyTorch backend; default: the one shipped in "
                                        "samples/ for r18_os8_camvid, else the published one)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N (see Segmenter.open)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--alpha", type=unit_interval, default=0.5, help="overlay opacity, 0 to 1")
    p.add_argument("--resize", choices=("stretch", "keep_ratio"),
                   help="how images of another aspect ratio reach the input (default: the zoo entry's test resize)")
    p.add_argument("--labels", action="store_true",
                   help="video/camera/stream input: also write each frame's label map as PNG (images always get one)")
    p.add_argument("--queue", type=int, default=4, help="frames buffered between decode, inference and encode (at least 1)")
    p.add_argument("--no-pipeline", action="store_true", help="one frame after the other in one thread (baseline)")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders, or ONE video file, camera index (0) or rtsp:// / http:// URL")
    p.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .segmenter import Segmenter
    from .streams import check_not_inputs, check_queue_size, open_source, run_pipeline, run_plain

    check_queue_size(args.queue)
    source = open_source(args.inputs)
    out = Path(args.out)
    check_not_inputs(source, out)  # before the model is opened
    with Segmenter.open(args.model, device=args.device, checkpoint=args.checkpoint, resize=args.resize) as seg:
        print(seg)
        if args.no_pipeline:
            stats = run_plain(seg, source, out, args.alpha, args.labels)
        else:
            stats = run_pipeline(seg, source, out, args.alpha, args.labels, queue_size=args.queue)
    note = " (interrupted: the output was closed cleanly)" if stats.interrupted else ""
    print(f"{stats.frames} frames in {stats.seconds:.1f} s ({stats.fps:.2f} fps){note}")
    for o in stats.outputs:
        print(o)
    return 130 if stats.interrupted else 0
