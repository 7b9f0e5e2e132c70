"""``pspnet-trt predict``: run a Segmenter on images and write label maps / overlays."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="segment images with an .onnx, an engine or a zoo model")
    p.add_argument("--model", required=True, help=".onnx, .engine (with its manifest) or zoo name")
    p.add_argument("--checkpoint", help="checkpoint for a zoo name (PyTorch backend)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N (see Segmenter.open)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    p.add_argument("images", nargs="+", help="image files")
    p.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..preprocess import colorize, read_image, write_image
    from .segmenter import Segmenter

    out = Path(args.out)
    with Segmenter.open(args.model, device=args.device, checkpoint=args.checkpoint) as seg:
        print(seg)
        for name in args.images:
            image = read_image(name)
            labels = seg.predict(image)
            for suffix, picture in (("labels", labels), ("color", colorize(labels, seg.palette)),
                                    ("overlay", seg.overlay(image, labels, args.alpha))):
                write_image(out / f"{Path(name).stem}_{suffix}.png", picture)
            print(out / f"{Path(name).stem}_overlay.png")
    return 0
