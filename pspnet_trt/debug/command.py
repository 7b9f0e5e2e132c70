"""``pspnet-trt debug``: which layer makes an artifact leave its reference (Polygraphy, every tensor marked)."""

from __future__ import annotations

import argparse

from ..deploy import FLOAT_PRECISIONS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("debug", help="find the layer where an FP16/INT8 artifact or engine leaves its reference",
                       description="Runs REF and ART on the same real images with every intermediate tensor marked "
                                   "as an output (Polygraphy), matches tensors by name and reports per layer the "
                                   "relative L2, max abs error and cosine, the PyTorch module, the first divergence "
                                   "and the largest error growth. Exit 0: the comparison ran (a divergence is a "
                                   "finding); 2: bad input; with --fix, 1: the budget cannot be met.")
    p.add_argument("--reference", required=True, help="FP32 ONNX, or a zoo name (with --checkpoint)")
    p.add_argument("--checkpoint", help="checkpoint for a zoo-name --reference")
    p.add_argument("--artifact", required=True, help="ONNX (FP16, INT8, ...) or TensorRT engine to examine")
    p.add_argument("--artifact-onnx", help="for an engine: the ONNX it was built from (default: its manifest's)")
    p.add_argument("--data", help="dataset root in the zoo entry's layout or a folder data set (labelled images; "
                                  "needed by --fix)")
    p.add_argument("--split", help="dataset split (default: the zoo entry's evaluation split)")
    p.add_argument("--images", type=int, default=4, help="number of images (4)")
    p.add_argument("--images-dir", help="a folder of images instead of --data")
    p.add_argument("--report", help="folder for debug.json, debug.md, error_per_layer.png")
    p.add_argument("--factor", type=float, default=3.5,
                   help="first divergence: a layer adds this many times the median error of earlier layers (3.5)")
    p.add_argument("--fix", type=float, metavar="BUDGET",
                   help="keep the fewest layers in higher precision so that mIoU is within BUDGET points of the "
                        "reference on the debug images; writes the fixed artifact")
    p.add_argument("--out", help="fixed artifact (default: ART_fixed.onnx beside ART)")
    p.add_argument("--calibration", help="INT8 --fix: the calibration list the artifact was quantized with")
    p.add_argument("--float-dtype", choices=FLOAT_PRECISIONS,
                   help="INT8 --fix: precision of the kept layers (default: the artifact's, else fp16)")
    p.set_defaults(func=_debug)


def _debug(args: argparse.Namespace) -> int:
    from ..artifacts import check_out
    from ..files import check_outputs
    from . import debug_artifacts
    from .report import summary_line

    inputs = [args.reference, args.artifact, args.artifact_onnx, args.checkpoint, args.calibration]
    report = [f"{args.report}/{f}" for f in ("debug.json", "debug.md", "error_per_layer.png")] if args.report else []
    check_outputs(report, inputs, fix="pass another --report folder")
    if args.out:  # the fixed artifact is an ONNX
        check_out(args.out, "onnx", inputs=inputs)
    comparison, fix = debug_artifacts(
        args.reference, args.artifact, data=args.data, images=args.images, images_dir=args.images_dir,
        split=args.split, checkpoint=args.checkpoint, artifact_onnx=args.artifact_onnx, report_dir=args.report,
        fix_budget=args.fix, fix_out=args.out, calibration=args.calibration, float_dtype=args.float_dtype,
        factor=args.factor)
    print("largest error growth:")
    for r in comparison.worst_growth():
        print(f"  {r.module:40s} added {r.growth:.3g} (rel L2 {r.rel_l2:.3g})")
    for note in comparison.notes:
        print(f"note: {note}")
    if args.report:
        print(f"report: {args.report}/debug.md")
    status = 0
    if fix is not None:
        state = "met" if fix.met else "CANNOT be met"
        print(f"fix: budget {fix.budget} {state}: {len(fix.kept)} of {len(fix.candidates)} layers kept in "
              f"{fix.float_dtype.upper()}, mIoU {fix.fixed_miou:.2f} (reference {fix.reference_miou:.2f}, "
              f"artifact {fix.artifact_miou:.2f}) -> {fix.out}")
        status = 0 if fix.met else 1
    print(summary_line(comparison))
    return status
