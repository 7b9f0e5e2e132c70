"""``pspnet-trt engine`` / ``make engine MODEL=... PRECISION=...``: checkpoint -> ONNX with the precision in the
graph -> (INT8) -> engine -> check. An orchestrator over the stages, like ``demo.py`` (so ``trt/`` imports no
other stage).

Without TensorRT or a usable GPU it stops at once with one line saying what is missing, before anything is
downloaded or exported (on such a machine, `pspnet-trt export` makes the ONNX files ONNX Runtime runs).

Artifact names: one scheme for the Makefile, this command and the docs (:func:`artifact_name`)::

    engines/<model>_<H>x<W>[_frame<FH>x<FW>|_pixels]_<precision>.onnx|.engine

``H``x``W`` is the network input (default: the zoo's deploy size), ``_frame<FH>x<FW>`` marks a raw-frame
(bgr8) artifact and its camera frame size, ``_pixels`` a DeepStream (pixels) input, and ``precision`` is
fp32, fp16, int8 or best. ``python -m pspnet_trt.engine --model M --precision P [...]`` prints a name (the
Makefile takes its names from there).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Optional, Sequence, Union

from .artifacts import artifact_name
from .errors import UserError
from .trt.build import BuildConfig

log = logging.getLogger(__name__)
ARTIFACT_DIR = "engines"
# `make engine` sets this so that hints name make variables (CHECKPOINT=PATH), not the flags behind them
MAKE_ENV = "PSPNET_TRT_MAKE"
MAKE_VARIABLES = (("--checkpoint PATH", "CHECKPOINT=PATH"), ("--data ROOT", "DATA=ROOT"),
                  ("--images-dir FOLDER", "IMAGES_DIR=FOLDER"), ("--random-weights", "RANDOM_WEIGHTS=1"),
                  ("--input-size HxW", "INPUT_SIZE=HxW"))


def make_hint(message: str) -> str:
    """``message`` with the flags of its hints spelt as the make variables that set them."""
    for flag, variable in MAKE_VARIABLES:
        message = message.replace(flag, variable)
    return message


def preflight() -> str:
    """The labels dtype engines need here (int32 before TensorRT 10); a one-line UserError instead when TensorRT
    or a usable GPU is missing, so that nothing is downloaded or exported for an engine that cannot be built."""
    from .trt.plan import engine_plan

    why, dtype = engine_plan()
    if why:
        raise UserError(f"{why}: TensorRT engines need TensorRT and an NVIDIA GPU, so nothing was downloaded or "
                        "exported. On this machine, export ONNX (pspnet-trt export) and run it with ONNX Runtime")
    return dtype



def make_engine(model: str, cfg: BuildConfig, checkpoint: Optional[Union[str, Path]] = None,
                input_size: Optional[str] = None, data: Optional[Union[str, Path]] = None,
                validate_images: int = 20, out_dir: Union[str, Path] = "engines",
                images_dir: Optional[Union[str, Path]] = None, device: str = "auto", input_format: str = "normalized",
                frame_size: Optional[str] = None, frame_upsample: Optional[str] = None,
                random_weights: bool = False) -> int:
    """Export, (quantize), build, then check the engine against the PyTorch model; 0 if it passed, 1 if not.

    The check (:func:`pspnet_trt.validate.check.check_artifact`, recorded in the engine's manifest): with
    ``data``, the mIoU gate on ``validate_images`` images of the evaluation split; without, labels agreement
    on ``validate_images`` images of ``images_dir`` (default ``samples/``) against a threshold per precision.
    TensorRT, a GPU and (INT8) calibration data are checked first; files are named by :func:`artifact_name`.
    An INT8 build draws its calibration list into ``out_dir`` (never over a committed ``calibration/`` list).
    """
    from .checkpoints import resolve_checkpoint
    from .export import export_zoo
    from .export.onnx_export import DEFAULT_FRAME_UPSAMPLE
    from .sizes import parse_size
    from .zoo import get_spec

    spec = get_spec(model)
    out = Path(out_dir)
    if cfg.precision == "int8" and cfg.calibration is None and not data:
        raise UserError("INT8 needs calibration images: pass --data ROOT (its training split is used)")
    dtype = preflight()  # before any download or export
    ckpt = resolve_checkpoint(model, checkpoint, random_weights=random_weights)  # shipped / published; None: random
    size = parse_size(input_size) if input_size else spec.deploy_size
    frame = parse_size(frame_size) if frame_size else None

    def name(precision: str, suffix: str = ".onnx") -> Path:
        return out / artifact_name(model, precision, size, frame, input_format, suffix)

    fmt = dict(input_format=input_format, frame_size=frame, frame_upsample=frame_upsample or DEFAULT_FRAME_UPSAMPLE)
    fp32 = export_zoo(model, name("fp32"), checkpoint=ckpt, input_size=size, output="labels",
                      labels_dtype=dtype, random_weights=random_weights, **fmt)  # type: ignore[arg-type]
    onnx = fp32
    if cfg.precision in ("fp16", "best"):
        onnx = export_zoo(model, name("fp16"), checkpoint=ckpt, input_size=size, output="labels",
                          precision="fp16", labels_dtype=dtype, random_weights=random_weights, **fmt)  # type: ignore[arg-type]
    if cfg.precision == "int8" or (cfg.precision == "best" and data):
        if cfg.calibration is None:
            from .data import default_split
            from .quant import CalibrationList, make_calibration_list, quantize_onnx

            calib = make_calibration_list(model, data, default_split(spec, data, "train"), 64, 0,  # type: ignore[arg-type]
                                          out=out / f"{model}_{spec.train_split}_n64_s0.txt", overwrite=True)
            onnx = quantize_onnx(fp32, CalibrationList.read(calib, data), name("int8"))
    from .trt import build

    engine = build.build_engine(onnx, name(cfg.precision, ".engine"), cfg)
    print(engine)
    if random_weights:
        log.warning("%s has random weights (--random-weights): not checked against PyTorch", engine)
        return 0
    from .validate.check import check_artifact

    passed = check_artifact(model, engine, checkpoint=ckpt, data=data, images_dir=images_dir, limit=validate_images,
                            device=device, report_dir=name(cfg.precision, "_validation"))
    return 0 if passed else 1


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from .export.command import add_input_format_options, add_random_weights_option
    from .trt.command import add_build_options
    from .validate.gate import AGREEMENT_FLOORS

    floors = ", ".join(f"{k.upper()} {v:g} %" for k, v in AGREEMENT_FLOORS.items())
    p = sub.add_parser("engine", help="zoo model -> checked engine: download, export, quantize, build, check",
                       description="After the build the engine is checked against the PyTorch model and the verdict "
                                   "recorded in its manifest: with --data, the gate of `validate` (mIoU and "
                                   "agreement) on --validate-images images; without, labels agreement on the images "
                                   "of --images-dir (default: samples/); both against the agreement floor of its "
                                   f"precision ({floors}). Exit 1 if the check fails.")
    add_build_options(p)
    p.add_argument("--model", required=True)
    p.add_argument("--checkpoint", help="default: the checkpoint shipped in samples/ for r18_os8_camvid, else the "
                                        "published one (downloaded once)")
    add_random_weights_option(p)
    p.add_argument("--input-size", help="HxW (default: the zoo's deploy size)")
    p.add_argument("--data", help="dataset root: calibration (INT8) and a quick mIoU validation")
    p.add_argument("--images-dir", help="without --data: images for the labels-agreement check (default: samples/)")
    p.add_argument("--validate-images", type=int, default=20, help="images of the check after the build (20)")
    p.add_argument("--out-dir", default=ARTIFACT_DIR, help="where the artifacts go, named "
                   "<model>_<H>x<W>[_frame<FH>x<FW>|_pixels]_<precision>.onnx|.engine (default engines/)")
    add_input_format_options(p)
    p.set_defaults(func=_engine)


def _engine(args: argparse.Namespace) -> int:
    from .trt.command import build_config

    try:
        return make_engine(args.model, build_config(args), checkpoint=args.checkpoint, input_size=args.input_size,
                           data=args.data, validate_images=args.validate_images, out_dir=args.out_dir,
                           images_dir=args.images_dir, input_format=args.input_format, frame_size=args.frame_size,
                           frame_upsample=args.frame_upsample, random_weights=args.random_weights)
    except UserError as e:
        if os.environ.get(MAKE_ENV):  # run by `make engine`: name the make variables
            raise UserError(make_hint(str(e))) from None
        raise


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m pspnet_trt.engine --model M --precision P [--input-size HxW] [--frame-size HxW]
    [--input-format F] [--suffix .engine]``: print the artifact path (the Makefile names its files with it)."""
    from .sizes import parse_size

    p = argparse.ArgumentParser(prog="python -m pspnet_trt.engine", description=main.__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--precision", required=True)
    p.add_argument("--input-size")
    p.add_argument("--frame-size")
    p.add_argument("--input-format")
    p.add_argument("--suffix", default=".onnx")
    p.add_argument("--out-dir", default=ARTIFACT_DIR)
    a = p.parse_args(argv)
    try:
        print(Path(a.out_dir) / artifact_name(a.model, a.precision, parse_size(a.input_size) if a.input_size else None,
                                              parse_size(a.frame_size) if a.frame_size else None, a.input_format,
                                              a.suffix))
    except UserError as e:
        p.error(str(e))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
