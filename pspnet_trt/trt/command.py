"""``pspnet-trt build`` (ONNX -> engine) and ``pspnet-trt engine`` (download -> export -> quantize -> build -> check)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .build import BuildConfig


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("build", help="TensorRT engine + manifest from an exported ONNX (needs TensorRT and a GPU)")
    add_build_options(p)
    p.add_argument("--onnx", required=True)
    p.add_argument("--out", required=True, help="engines/NAME.engine (manifest written beside it)")
    p.add_argument("--data", help="dataset root the --calibration list's image paths are relative to")
    p.set_defaults(func=_build)

    p = sub.add_parser("engine", help="zoo model -> checked engine: download, export, quantize, build, check",
                       description="After the build the engine is checked against the PyTorch model and the verdict "
                                   "recorded in its manifest: with --data, the mIoU gate of `validate` on "
                                   "--validate-images images; without, labels agreement on the images of "
                                   "--images-dir (default: samples/) against a threshold per precision (FP32 99.9 %%, "
                                   "FP16 99 %%, INT8 97 %%). Exit 1 if the check fails.")
    add_build_options(p)
    p.add_argument("--model", required=True)
    p.add_argument("--checkpoint", help="default: the published checkpoint (downloaded once)")
    p.add_argument("--input-size", help="HxW (default: the zoo's deploy size)")
    p.add_argument("--data", help="dataset root: calibration (INT8) and a quick mIoU validation")
    p.add_argument("--images-dir", help="without --data: images for the labels-agreement check (default: samples/)")
    p.add_argument("--validate-images", type=int, default=20, help="images of the check after the build (20)")
    p.add_argument("--out-dir", default="engines")
    from ..export.command import add_input_format_options

    add_input_format_options(p)
    p.set_defaults(func=_engine)


def add_build_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=("fp32", "fp16", "int8", "best"), default="fp16")
    p.add_argument("--workspace-gb", type=float, default=2.0)
    p.add_argument("--timing-cache", default="engines/timing.cache", help="persistent timing cache")
    p.add_argument("--opt-level", type=int, help="builder optimisation level 0-5")
    p.add_argument("--dla-core", type=int, help="Jetson DLA core (GPU fallback on)")
    p.add_argument("--calibration", help="implicit INT8 calibration list (TensorRT < 11; prefer `quantize`)")
    p.add_argument("--max-batch", type=int, default=1, help="largest batch of a --dynamic-batch ONNX")


def _config(args: argparse.Namespace) -> BuildConfig:
    from .build import BuildConfig

    return BuildConfig(precision=args.precision, workspace_gb=args.workspace_gb, timing_cache=args.timing_cache,
                       opt_level=args.opt_level, dla_core=args.dla_core, calibration=args.calibration,
                       calibration_root=args.data, max_batch=args.max_batch)


def _build(args: argparse.Namespace) -> int:
    from .build import build_engine

    print(build_engine(args.onnx, args.out, _config(args)))
    return 0


def _engine(args: argparse.Namespace) -> int:
    from .pipeline import make_engine

    return make_engine(args.model, _config(args), checkpoint=args.checkpoint, input_size=args.input_size,
                       data=args.data, validate_images=args.validate_images, out_dir=args.out_dir,
                       images_dir=args.images_dir, input_format=args.input_format, frame_size=args.frame_size,
                       frame_upsample=args.frame_upsample)
