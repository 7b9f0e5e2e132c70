"""The artifact kinds of the conformance matrix (tests/test_conformance*.py), built once per session.

Every kind the product writes: normalized input with labels or logits, bgr8 raw frames with and without an
in-graph resize and with either frame upsample (labels: nearest from the input size; logits: the scores bilinearly
to the frame), pixels; FP32 / FP16 / INT8; a static batch of 1 and a dynamic batch. A narrow R-18 PSPNet with
random weights (plumbing: every consumer must give the labels Segmenter gives on the same artifact), at 64x128.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "camvid"
SIZE = (64, 128)  # network input (H, W)
FRAME = (96, 192)  # frame size of the bgr8 artifact with an in-graph resize (1.5x)
# kind -> (DeployInfo changes, precisions, batches); batch None = dynamic
KINDS: Dict[str, Tuple[Dict, Tuple[str, ...], Tuple] ] = {
    "normalized-labels": ({"output": "labels"}, ("fp32", "fp16", "int8"), (1, None)),
    "normalized-logits": ({"output": "logits"}, ("fp32",), (1,)),
    "bgr8-resize": ({"output": "labels", "input_format": "bgr8", "frame_size": FRAME}, ("fp32", "fp16", "int8"), (1, None)),
    "bgr8-native": ({"output": "labels", "input_format": "bgr8", "frame_size": SIZE}, ("fp32",), (1,)),
    # the scores bilinearly straight to the frame inside the graph (--frame-upsample logits), then ArgMax
    "bgr8-upsample-logits": ({"output": "labels", "input_format": "bgr8", "frame_size": FRAME,
                              "frame_upsample": "logits"}, ("fp32",), (1,)),
    "pixels": ({"output": "labels", "input_format": "pixels"}, ("fp32", "fp16", "int8"), (1,)),
}
_CACHE: Dict[str, object] = {}


def name(kind: str, precision: str, batch) -> str:
    return f"{kind}_{precision}_{'dyn' if batch is None else f'b{batch}'}"


# every artifact the matrix runs (the dynamic batch: FP32 only; the batch rule does not depend on the precision)
ARTIFACTS = [name(k, p, b) for k, (_, precisions, batches) in KINDS.items()
             for b in batches for p in (precisions if b is not None else ("fp32",))]


def tiny_model():
    from pspnet_trt.models import create_model

    return create_model("r18_os8_camvid", random_weights=True, seed=0, ppm_channels=16, aux_channels=16)


def base_info():
    from pspnet_trt.deploy import DeployInfo
    from pspnet_trt.zoo import get_spec

    return DeployInfo.from_spec(get_spec("r18_os8_camvid"), input_size=SIZE)


def images() -> List[np.ndarray]:
    """Five BGR images: three at the bgr8 frame size, two of other sizes and aspect ratios."""
    files = sorted((SAMPLE / "test").glob("*.jpg"))
    raw = [cv2.imread(str(f)) for f in files]
    sizes = [FRAME, FRAME, (80, 100), (120, 160), FRAME]
    return [cv2.resize(raw[i % len(raw)], (w, h), interpolation=cv2.INTER_AREA) for i, (h, w) in enumerate(sizes)]


def build(root: Path) -> Dict[str, Path]:
    """Every artifact of :data:`KINDS` under ``root`` (built once per session); name -> path."""
    if "artifacts" in _CACHE:
        return _CACHE["artifacts"]  # type: ignore[return-value]
    from pspnet_trt.export import export_onnx
    from pspnet_trt.quant import CalibrationList, make_calibration_list, quantize_onnx

    model, info = tiny_model(), base_info()
    calib = CalibrationList.read(make_calibration_list("r18_os8_camvid", SAMPLE, "train", 4, seed=0,
                                                       out=root / "cal.txt"), SAMPLE)
    out: Dict[str, Path] = {}
    for kind, (changes, precisions, batches) in KINDS.items():
        for batch in batches:
            kinfo = info.with_(**changes, batch=batch)
            fp32 = export_onnx(model, kinfo, root / f"{name(kind, 'fp32', batch)}.onnx")
            out[name(kind, "fp32", batch)] = fp32
            if batch is None:
                continue  # the dynamic batch: FP32 only (the batch rule does not depend on the precision)
            if "fp16" in precisions:
                out[name(kind, "fp16", batch)] = export_onnx(model, kinfo, root / f"{name(kind, 'fp16', batch)}.onnx",
                                                             precision="fp16")
            if "int8" in precisions:
                out[name(kind, "int8", batch)] = quantize_onnx(fp32, calib, root / f"{name(kind, 'int8', batch)}.onnx")
    _CACHE["artifacts"], _CACHE["model"] = out, model
    return out


def model():
    return _CACHE["model"]


def segmenter_labels(built: Dict[str, Path], imgs: List[np.ndarray]) -> Dict[str, List[np.ndarray]]:
    """name -> Segmenter's labels of ``imgs`` on the ONNX (ONNX Runtime, CPU), one image per call: what every
    cell of the matrix must give (computed once per session)."""
    if "labels" not in _CACHE:
        from pspnet_trt.runtime import Segmenter
        from pspnet_trt.runtime.ort import OrtBackend

        out = {}
        for n, path in built.items():
            with Segmenter(OrtBackend(path, device="cpu")) as seg:
                out[n] = [seg.predict(im) for im in imgs]
        _CACHE["labels"] = out
    return _CACHE["labels"]  # type: ignore[return-value]
