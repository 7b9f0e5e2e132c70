"""INT8 as explicit Q/DQ in the ONNX graph (what TensorRT 8.5-11 and ONNX Runtime both run).

Quantizer: ``onnxruntime.quantization.quantize_static`` in QDQ format, calibrated on the CPU.
Placement rules we enforce (TensorRT's fusion rules for explicit quantization):

* Conv: INT8 input activation (per-tensor, symmetric) and INT8 weights (per output channel,
  symmetric, zero point 0), so Conv(+BN folded)+ReLU fuse into one INT8 kernel.
* Residual Add: both inputs quantized, so TensorRT fuses the Add into the preceding Conv.
* Inputs only: the outputs of Conv/Add carry no Q/DQ (TensorRT's placement guide); a Q/DQ pair
  feeding a ReLU would round the pre-ReLU tensor once more with its own scale.
* Nothing around Resize, Concat, the pooling MatMuls/AveragePool, ArgMax or the final upsample:
  Q/DQ there would force reformatting for no gain (the PPM branches are tiny), and the logits
  stay in float so the argmax sees full precision.

ONNX Runtime fuses the Q/DQ pairs into QLinearConv kernels (VNNI on this CPU), so INT8 latency and
numerics are measured here before a GPU is involved.

Chosen over NVIDIA ModelOpt's ONNX PTQ by measurement (``benchmarks/quantizer_compare.py``): with
the same placement both give the same scales and the same predictions (ModelOpt calibrates with
ONNX Runtime's histogram calibrators too), and ``nvidia-modelopt[onnx]`` would pull onnxruntime-gpu
and CuPy into the environment.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from ..deploy import DeployInfo, read_onnx_info
from ..deps import require
from ..errors import UserError
from .calibrate import CalibrationList

log = logging.getLogger(__name__)
METHODS = ("entropy", "percentile", "minmax")
# tensorrt: symmetric INT8 activations (zero point 0), what TensorRT's explicit quantization accepts.
# cpu: asymmetric UINT8 activations (U8S8), what x86 ONNX Runtime runs fastest (VNNI); not for TensorRT.
TARGETS = ("tensorrt", "cpu")
QUANTIZED_OPS = ["Conv", "Add"]


class _Reader:
    """onnxruntime CalibrationDataReader over a calibration list, in ranges (``set_range``): ORT's
    histogram calibrators keep every intermediate output of the images they are given, so we feed
    them one image at a time (``CalibStridedMinMax``) and they merge histograms in between.
    R-50 at 512x1024 needs > 21 GB for 64 images in one go and ~14 GB in chunks of 4, so one at a time."""

    def __init__(self, calibration: CalibrationList, info: DeployInfo) -> None:
        self.calibration, self.info = calibration, info
        self.set_range(0, len(calibration.images))

    def __len__(self) -> int:
        return len(self.calibration.images)

    def set_range(self, start_index: int, end_index: int) -> None:
        part = CalibrationList(self.calibration.root, self.calibration.images[start_index:end_index])
        self.batches = iter(part.batches(self.info))

    def get_next(self) -> Optional[Dict[str, Any]]:
        batch = next(self.batches, None)
        return None if batch is None else {self.info.input_name: batch}


def excluded_nodes(model: Any) -> List[str]:
    """Conv/Add nodes that must stay in float: the PPM (after the pools) and the classifier."""
    out = []
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OPS and (node.name.startswith("/decoder") or "/ppm_net/convs" in node.name):
            out.append(node.name)
    return out


def quantize_onnx(onnx_path: Union[str, Path], calibration: CalibrationList, out: Union[str, Path],
                  method: str = "entropy", keep_float: Sequence[str] = (), calibration_info: Optional[Dict[str, Any]] = None,
                  cache: Optional[Union[str, Path]] = None, target: str = "tensorrt") -> Path:
    """FP32 ONNX (from ``pspnet-trt export``) -> Q/DQ INT8 ONNX at ``out`` with pspnet-trt metadata.

    ``keep_float``: names of Conv/Add nodes left unquantized (the mixed-precision pass fills it).
    ``cache``: tensor ranges are stored there and reused (calibrate once, quantize many variants).
    ``target``: ``tensorrt`` (symmetric INT8 activations) or ``cpu`` (UINT8 activations, ONNX Runtime on x86).
    """
    onnx = require("onnx", "quantization")
    require("onnxruntime", "quantization")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from ..export.onnx_export import attach_metadata, save_onnx

    if method not in METHODS:
        raise UserError(f"--method must be one of {METHODS}, got {method!r}")
    if target not in TARGETS:
        raise UserError(f"--target must be one of {TARGETS}, got {target!r}")
    symmetric = target == "tensorrt"
    info = read_onnx_info(onnx_path)
    if info.precision != "fp32":
        raise UserError(f"{onnx_path} is a {info.precision} graph; quantize the FP32 export")
    model = onnx.load(str(onnx_path))
    start = time.perf_counter()
    exclude = sorted(set(excluded_nodes(model)) | set(keep_float))
    with tempfile.TemporaryDirectory() as tmp:
        tmp_out = Path(tmp) / "q.onnx"
        quantize_static(
            str(onnx_path), str(tmp_out), _Reader(calibration, info), quant_format=QuantFormat.QDQ,
            op_types_to_quantize=QUANTIZED_OPS, per_channel=True,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
            weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
            calibrate_method={"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile,
                              "minmax": CalibrationMethod.MinMax}[method],
            # QuantizeBias False: TensorRT has no INT32 DequantizeLinear; biases stay float (fused in the kernel)
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True, "QuantizeBias": False,
                           "CalibMovingAverage": method == "minmax", "CalibTensorRangeSymmetric": symmetric,
                           "CalibStridedMinMax": 1,
                           # tensorrt: Q/DQ on the inputs of Conv/Add only, as TensorRT's placement guide says.
                           # Quantizing their outputs too rounds every pre-ReLU tensor once more with its own
                           # scale: argmax agreement 97.9 % instead of 99.2 % (benchmarks/quantizer_compare.py).
                           # cpu: ORT chains QLinearConvs through INT8 outputs, which is what makes it fast.
                           "OpTypesToExcludeOutputQuantization": QUANTIZED_OPS if symmetric else []},
            calibration_cache_path=str(cache) if cache else None,
        )
        quantized = onnx.load(str(tmp_out))
    seconds = time.perf_counter() - start
    extra = {**info.extra, "quantization": {
        "tool": "onnxruntime.quantization", "method": method, "target": target, "calibration_images": len(calibration.images),
        "kept_float": list(keep_float), "excluded_by_rule": excluded_nodes(model), "seconds": round(seconds, 1),
        **(calibration_info or {})}}
    attach_metadata(quantized, info.with_(precision="int8", extra=extra))
    check_placement(quantized, target)
    save_onnx(quantized, out)
    log.info("quantized %s -> %s (%s, %d images) in %.1f s", onnx_path, out, method, len(calibration.images), seconds)
    return Path(out)


def check_placement(model: Any, target: str = "tensorrt") -> None:
    """Raise if a Q/DQ pair sits where TensorRT cannot fuse it (see module docstring); with target
    ``tensorrt`` also if a Conv/Add output is quantized (a Q/DQ pair feeding a ReLU)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    forbidden = ("Resize", "Concat", "MatMul", "ArgMax", "AveragePool") + (("Relu",) if target == "tensorrt" else ())
    for node in model.graph.node:
        if node.op_type in forbidden:
            for name in node.input:
                src = producers.get(name)
                if src is not None and src.op_type == "DequantizeLinear":
                    raise RuntimeError(f"Q/DQ feeds {node.op_type} node {node.name}: TensorRT would reformat there")


def qdq_summary(model: Any) -> Dict[str, Any]:
    """How many Conv/Add nodes run in INT8: a Conv whose weight, an Add whose inputs come from DequantizeLinear."""
    producers = {o: n for n in model.graph.node for o in n.output}
    quantized: Dict[str, int] = {}
    total: Dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OPS:
            total[node.op_type] = total.get(node.op_type, 0) + 1
            inputs = node.input[1:2] if node.op_type == "Conv" else node.input
            if any(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in inputs):
                quantized[node.op_type] = quantized.get(node.op_type, 0) + 1
    return {"quantized": quantized, "total": total}
