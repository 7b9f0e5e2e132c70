"""``pspnet-trt calibrate`` and ``pspnet-trt quantize``."""

from __future__ import annotations

import argparse

from ..deploy import FLOAT_PRECISIONS
from ..values import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="pick a class-balanced calibration image list from the training split")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True,
                   help="dataset root in the zoo entry's layout, or a folder data set (classes.json, images/, masks/)")
    p.add_argument("--split", default="train", help="the split the images are drawn from (default train)")
    p.add_argument("--num-images", type=positive_int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--input-size", help="HxW deploy size the list is for (recorded; `quantize` refuses an ONNX of "
                                        "another size). Images are preprocessed from the ONNX's own metadata")
    p.add_argument("--out", help="default: calibration/<model>_<split>_n<N>_s<seed>.txt")
    p.add_argument("--force", action="store_true", help="allow the evaluation split (optimistic mIoU!)")
    p.add_argument("--overwrite", action="store_true", help="replace a different list already at --out (default: "
                                                            "refuse; an identical one is left as it is)")
    p.set_defaults(func=_calibrate)

    p = sub.add_parser("quantize", help="FP32 ONNX -> INT8 Q/DQ ONNX (TensorRT explicit quantization)")
    p.add_argument("--onnx", required=True, help="FP32 ONNX from `pspnet-trt export`")
    p.add_argument("--calibration", required=True, help="list from `pspnet-trt calibrate`")
    p.add_argument("--data", help="dataset root (if the list moved; needed with --mixed-budget)")
    p.add_argument("--method", choices=("entropy", "percentile", "minmax"), default="entropy")
    p.add_argument("--target", choices=("tensorrt", "cpu"), default="tensorrt",
                   help="tensorrt: symmetric INT8 activations (TensorRT Q/DQ); cpu: UINT8 activations for ONNX "
                        "Runtime on this machine's CPU class (7-bit weights without VNNI; recorded in the file), "
                        "2-3.5x faster than FP32 on x86 but not accepted by TensorRT")
    p.add_argument("--float-dtype", choices=FLOAT_PRECISIONS, default="fp16",
                   help="precision of the layers --mixed-budget keeps out of INT8 (fp16: FP16 islands in the graph)")
    p.add_argument("--mixed-budget", type=float, help="keep the most sensitive layers in float until mIoU is "
                                                      "within this many points of FP32 (on validation images); "
                                                      "exit 1 if it is not reached (the best graph is kept as "
                                                      "OUT_STEM.over_budget.onnx, not as --out)")
    p.add_argument("--mixed-images", type=int, default=8, help="validation images for the sensitivity pass")
    p.add_argument("--max-float", type=int, help="at most this many layers kept in float")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_quantize)


def _calibrate(args: argparse.Namespace) -> int:
    from ..sizes import parse_size
    from .calibrate import make_calibration_list

    size = parse_size(args.input_size) if args.input_size else None
    print(make_calibration_list(args.model, args.data, args.split, args.num_images, args.seed, args.out, args.force,
                                input_size=size, overwrite=args.overwrite))
    return 0


def _quantize(args: argparse.Namespace) -> int:
    import os
    import sys
    from pathlib import Path

    from ..artifacts import check_out
    from ..errors import UserError
    from ..files import atomic_open, write_json
    from .calibrate import CalibrationList
    from .qdq import quantize_onnx

    out = Path(args.out)
    best = out.with_name(f"{out.stem}.over_budget{out.suffix}")  # --mixed-budget: renamed to --out only if met
    beside = [best, out.with_suffix(".mixed.json"), out.with_suffix(".mixed.md")] if args.mixed_budget is not None else []
    check_out(out, "onnx", inputs=[args.onnx, args.calibration], also=beside)
    calibration = CalibrationList.read(args.calibration, args.data)
    if args.mixed_budget is None:
        print(quantize_onnx(args.onnx, calibration, args.out, args.method, target=args.target))
        return 0
    if not args.data:
        raise UserError("--mixed-budget measures mIoU on validation images: pass the dataset root with --data")
    from ..artifacts import read_onnx_info
    from ..data import dataset_for_spec, default_split
    from ..zoo import get_spec
    from .sensitivity import mixed_precision

    spec = get_spec(read_onnx_info(args.onnx).model)
    split = "val" if default_split(spec, args.data) != "val" else "train"  # never tune on the split we report on
    result = mixed_precision(args.onnx, calibration, dataset_for_spec(spec, args.data, split), args.mixed_budget,
                             best, args.method, args.mixed_images, args.max_float, float_dtype=args.float_dtype,
                             target=args.target)
    write_json(out.with_suffix(".mixed.json"), result.to_dict())
    with atomic_open(out.with_suffix(".mixed.md"), "w") as f:
        f.write(result.markdown())
    print(result.markdown())
    if not result.budget_met:
        limit = f"--max-float {args.max_float}" if args.max_float is not None else "every quantized layer"
        print(f"quantize: --mixed-budget {args.mixed_budget} not met: the best reached is mIoU {result.final_miou:.2f} "
              f"vs FP32 {result.fp32_miou:.2f} ({result.final_miou - result.fp32_miou:+.2f} points) with "
              f"{len(result.kept_float)} layers out of INT8 ({limit}); that graph is {best}, not {out}. Allow more "
              "float layers (--max-float) or a larger budget", file=sys.stderr)
        return 1
    os.replace(best, out)
    print(out)
    return 0
