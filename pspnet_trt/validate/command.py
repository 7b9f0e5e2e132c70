"""``pspnet-trt validate``: PyTorch vs every given artifact on the same images; exit 1 if one fails the gate."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="mIoU of ONNX files / engines against the PyTorch model, pass or fail")
    p.add_argument("--model", required=True, help="zoo name")
    p.add_argument("--checkpoint", help="the model's checkpoint (default: the published one)")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--data", required=True, help="dataset root in the zoo entry's layout")
    p.add_argument("--split", help="default: the zoo entry's evaluation split")
    p.add_argument("--onnx", action="append", default=[], help="ONNX artifact (repeatable)")
    p.add_argument("--engine", action="append", default=[], help="TensorRT engine (repeatable)")
    p.add_argument("--input-size", help="HxW for PyTorch when no artifact is given (default: deploy size)")
    p.add_argument("--limit", type=int, help="first N images only")
    p.add_argument("--tolerance", type=float, default=0.5, help="allowed mIoU drop vs PyTorch, in points")
    p.add_argument("--mode", choices=("whole", "slide"), default="whole")
    p.add_argument("--device", default="cpu")
    p.add_argument("--report", required=True, help="report folder (report.json, report.md, iou_per_class.png)")
    p.set_defaults(func=_validate)


def _validate(args: argparse.Namespace) -> int:
    from ..data import dataset_for_spec
    from ..export import parse_size
    from ..runtime import open_backend
    from ..runtime.torch_backend import TorchBackend
    from ..zoo import get_spec
    from . import markdown, validate

    spec = get_spec(args.model)
    artifacts = [open_backend(p, device=args.device) for p in [*args.onnx, *args.engine]]
    size = artifacts[0].info.input_size if artifacts else (parse_size(args.input_size) if args.input_size else None)
    reference = TorchBackend.from_zoo(args.model, checkpoint=args.checkpoint, device=args.device, input_size=size,
                                      output=artifacts[0].info.output if artifacts else "logits",
                                      num_classes=args.num_classes)
    dataset = dataset_for_spec(spec, args.data, args.split)
    report = validate(reference, artifacts, dataset, limit=args.limit, tolerance=args.tolerance, mode=args.mode,
                      fit=spec.eval_resize, report_dir=args.report)
    print(markdown(report).split("## IoU per class")[0].rstrip())
    return 0 if report.passed else 1
