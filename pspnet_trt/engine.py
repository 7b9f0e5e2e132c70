"""``pspnet-trt engine`` / ``make engine MODEL=... PRECISION=...``: checkpoint -> ONNX with the precision in the
graph -> (INT8) -> engine -> check. An orchestrator over the stages, like ``demo.py`` (so ``trt/`` imports no
other stage).

Without TensorRT or a GPU everything up to the build still runs (the ONNX files are usable with
ONNX Runtime) and the command then stops with the message that says what is missing.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Optional, Union

from .errors import UserError
from .trt.build import BuildConfig, labels_dtype

log = logging.getLogger(__name__)



def make_engine(model: str, cfg: BuildConfig, checkpoint: Optional[Union[str, Path]] = None,
                input_size: Optional[str] = None, data: Optional[Union[str, Path]] = None,
                validate_images: int = 20, out_dir: Union[str, Path] = "engines",
                images_dir: Optional[Union[str, Path]] = None, device: str = "cuda", input_format: str = "normalized",
                frame_size: Optional[str] = None, frame_upsample: Optional[str] = None) -> int:
    """Export, (quantize), build, then check the engine against the PyTorch model; 0 if it passed, 1 if not.

    The check (:func:`pspnet_trt.validate.check.check_artifact`, recorded in the engine's manifest): with
    ``data``, the mIoU gate on ``validate_images`` images of the evaluation split; without, labels agreement
    on ``validate_images`` images of ``images_dir`` (default ``samples/``) against a threshold per precision.
    """
    from .checkpoints import fetch_checkpoint
    from .export import export_zoo
    from .export.onnx_export import DEFAULT_FRAME_UPSAMPLE
    from .sizes import parse_size
    from .zoo import get_spec

    spec = get_spec(model)
    out = Path(out_dir)
    ckpt = Path(checkpoint) if checkpoint else fetch_checkpoint(model)
    size = parse_size(input_size) if input_size else spec.deploy_size
    frame = parse_size(frame_size) if frame_size else None
    tag = f"{model}_{size[0]}x{size[1]}" + (f"_frame{frame[0]}x{frame[1]}" if frame else "") + \
        ("" if input_format == "normalized" else f"_{input_format}")
    dtype = labels_dtype()
    fmt = dict(input_format=input_format, frame_size=frame, frame_upsample=frame_upsample or DEFAULT_FRAME_UPSAMPLE)
    fp32 = export_zoo(model, out / f"{tag}_fp32.onnx", checkpoint=ckpt, input_size=size, output="labels",
                      labels_dtype=dtype, **fmt)  # type: ignore[arg-type]
    onnx = fp32
    if cfg.precision in ("fp16", "best"):
        onnx = export_zoo(model, out / f"{tag}_fp16.onnx", checkpoint=ckpt, input_size=size, output="labels",
                          precision="fp16", labels_dtype=dtype, **fmt)  # type: ignore[arg-type]
    if cfg.precision == "int8" or (cfg.precision == "best" and data):
        if cfg.calibration is None:
            if not data:
                raise UserError("INT8 needs calibration images: pass --data ROOT (training split is used) or run "
                                "`pspnet-trt calibrate` + `pspnet-trt quantize` yourself")
            from .quant import CalibrationList, make_calibration_list, quantize_onnx

            calib = make_calibration_list(model, data, spec.train_split, 64, 0)
            onnx = quantize_onnx(fp32, CalibrationList.read(calib, data), out / f"{tag}_int8.onnx")
    from .trt import build

    engine = build.build_engine(onnx, out / f"{tag}_{cfg.precision}.engine", cfg)
    print(engine)
    from .validate.check import check_artifact

    passed = check_artifact(model, engine, checkpoint=ckpt, data=data, images_dir=images_dir, limit=validate_images,
                            device=device, report_dir=out / f"{tag}_{cfg.precision}_validation")
    return 0 if passed else 1


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from .export.command import add_input_format_options
    from .trt.command import add_build_options

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
    add_input_format_options(p)
    p.set_defaults(func=_engine)


def _engine(args: argparse.Namespace) -> int:
    from .trt.command import build_config

    return make_engine(args.model, build_config(args), checkpoint=args.checkpoint, input_size=args.input_size,
                       data=args.data, validate_images=args.validate_images, out_dir=args.out_dir,
                       images_dir=args.images_dir, input_format=args.input_format, frame_size=args.frame_size,
                       frame_upsample=args.frame_upsample)
