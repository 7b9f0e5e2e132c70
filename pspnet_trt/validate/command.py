"""``pspnet-trt validate``: PyTorch vs every given artifact on the same images; exit 1 if one fails the gate."""

from __future__ import annotations

import argparse
from typing import Tuple

from ..values import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    from .gate import AGREEMENT_FLOORS

    floors = ", ".join(f"{k.upper()} {v:g} %" for k, v in AGREEMENT_FLOORS.items())
    p = sub.add_parser("validate", help="mIoU of ONNX files / engines against the PyTorch model, pass or fail",
                       description="Runs PyTorch and every --onnx/--engine artifact on the same images and writes "
                                   "report.json, report.md and iou_per_class.png, and each artifact's verdict into "
                                   "its record (an engine's manifest, NAME.validation.json beside an ONNX; see "
                                   "`pspnet-trt info`). An artifact passes when its mIoU is within --tolerance of "
                                   "PyTorch's, its labels agree with PyTorch's (computed as its graph computes them) "
                                   f"on at least the floor of its precision ({floors} of the pixels) and it predicts "
                                   "no label outside the class range. Exit 0: all passed "
                                   "(or no artifact given: evaluation only, nothing gated); 1: at least one "
                                   "failed; 2: bad input.")
    p.add_argument("--model", required=True, help="zoo name (see `pspnet-trt zoo`)")
    p.add_argument("--checkpoint", help="the model's checkpoint (default: the published one); one written by "
                                        "`pspnet-trt train` brings its class names and count")
    p.add_argument("--num-classes", type=positive_int, help="for a checkpoint fine-tuned to another class count")
    p.add_argument("--data", required=True,
                   help="dataset root in the zoo entry's layout, or a folder data set (classes.json, images/, masks/)")
    p.add_argument("--split", help="default: the zoo entry's evaluation split (a folder data set: val)")
    p.add_argument("--onnx", action="append", default=[], help="ONNX artifact (repeatable)")
    p.add_argument("--engine", action="append", default=[], help="TensorRT engine (repeatable)")
    p.add_argument("--input-size", help="HxW for PyTorch when no artifact is given (default: deploy size)")
    p.add_argument("--limit", type=int, help="first N images only (under 50 images, or the whole split if smaller, "
                                             "the records say \"partial\")")
    p.add_argument("--tolerance", type=float, default=0.5, help="allowed mIoU drop vs PyTorch, in points (0.5)")
    p.add_argument("--mode", choices=("whole", "slide"), default="whole",
                   help="whole: image resized to the input size; slide: crops of the input size (logits outputs only)")
    p.add_argument("--stride", help="HxW step of slide mode (default: 2/3 of the input size)")
    p.add_argument("--device", default="auto", help="auto (default: per artifact, CUDA where it can run), cpu, cuda[:N]")
    p.add_argument("--threads", type=positive_int, help="CPU threads for PyTorch and ONNX Runtime (default: their own choice)")
    p.add_argument("--report", required=True, help="report folder (report.json, report.md, iou_per_class.png)")
    p.set_defaults(func=_validate)


def _validate(args: argparse.Namespace) -> int:
    from ..sizes import parse_size
    from . import markdown, validate_artifacts

    report = validate_artifacts(
        args.model, [*args.onnx, *args.engine], args.data, split=args.split, checkpoint=args.checkpoint,
        device=args.device, input_size=parse_size(args.input_size) if args.input_size else None,
        num_classes=args.num_classes, limit=args.limit, tolerance=args.tolerance, mode=args.mode,
        stride=_stride(args.stride) if args.stride else None, report_dir=args.report, threads=args.threads,
    )
    print(markdown(report).split("## IoU per class")[0].rstrip())
    print(f"\nreport: {args.report}/report.md")
    if report.gated and report.partial:
        from ..records import full_minimum

        print(f"partial validation: {report.coverage}; a full one covers at least "
              f"{full_minimum(report.context.get('split_images'))} (drop --limit). The records say so, and "
              "Segmenter.open keeps warning until then")
    return 0 if report.passed else 1


def _stride(text: str) -> Tuple[int, int]:
    from ..errors import UserError

    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--stride must look like HxW (e.g. 341x683), got {text!r}") from None
    if h < 1 or w < 1:
        raise UserError(f"--stride {text} must be positive")
    return h, w
