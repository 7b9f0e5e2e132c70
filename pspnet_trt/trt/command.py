"""``pspnet-trt build`` (ONNX -> engine); its build options are shared with ``pspnet-trt engine`` (``engine.py``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..deploy import BUILD_PRECISIONS

if TYPE_CHECKING:
    from .build import BuildConfig


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("build", help="TensorRT engine + manifest from an exported ONNX (needs TensorRT and a GPU)")
    add_build_options(p)
    p.add_argument("--onnx", required=True)
    p.add_argument("--out", required=True, help="engines/NAME.engine (manifest written beside it)")
    p.add_argument("--data", help="dataset root the --calibration list's image paths are relative to")
    p.set_defaults(func=_build)


def add_build_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=BUILD_PRECISIONS, default="fp16")
    p.add_argument("--workspace-gb", type=float, default=2.0)
    p.add_argument("--timing-cache", default="engines/timing.cache", help="persistent timing cache")
    p.add_argument("--opt-level", type=int, help="builder optimisation level 0-5")
    p.add_argument("--dla-core", type=int, help="Jetson DLA core (GPU fallback on)")
    p.add_argument("--calibration", help="implicit INT8 calibration list (TensorRT < 11; prefer `quantize`)")
    p.add_argument("--max-batch", type=int, default=1, help="largest batch of a --dynamic-batch ONNX")


def build_config(args: argparse.Namespace) -> BuildConfig:
    from .build import BuildConfig

    return BuildConfig(precision=args.precision, workspace_gb=args.workspace_gb, timing_cache=args.timing_cache,
                       opt_level=args.opt_level, dla_core=args.dla_core, calibration=args.calibration,
                       calibration_root=args.data, max_batch=args.max_batch)


def _build(args: argparse.Namespace) -> int:
    from .build import build_engine

    print(build_engine(args.onnx, args.out, build_config(args)))
    return 0
