"""``make engine MODEL=... PRECISION=...``: checkpoint -> ONNX with the precision in the graph -> engine -> check.

Without TensorRT or a GPU everything up to the build still runs (the ONNX files are usable with
ONNX Runtime) and the command then stops with the message that says what is missing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Union

from ..errors import UserError
from .build import BuildConfig

log = logging.getLogger(__name__)


def labels_dtype() -> str:
    """uint8 labels where the installed TensorRT can cast to them (>= 10), else int32; uint8 without TensorRT."""
    try:
        import tensorrt
    except ImportError:
        return "uint8"
    from .version import capabilities

    return "uint8" if capabilities(str(tensorrt.__version__)).uint8_labels else "int32"


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
    from ..checkpoints import fetch_checkpoint
    from ..export import export_zoo
    from ..export.onnx_export import DEFAULT_FRAME_UPSAMPLE
    from ..sizes import parse_size
    from ..zoo import get_spec

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
            from ..quant import CalibrationList, make_calibration_list, quantize_onnx

            calib = make_calibration_list(model, data, spec.train_split, 64, 0)
            onnx = quantize_onnx(fp32, CalibrationList.read(calib, data), out / f"{tag}_int8.onnx")
    from . import build

    engine = build.build_engine(onnx, out / f"{tag}_{cfg.precision}.engine", cfg)
    print(engine)
    from ..validate.check import check_artifact

    passed = check_artifact(model, engine, checkpoint=ckpt, data=data, images_dir=images_dir, limit=validate_images,
                            device=device, report_dir=out / f"{tag}_{cfg.precision}_validation")
    return 0 if passed else 1
