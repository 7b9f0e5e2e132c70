"""Accuracy-driven mixed precision: which quantized layers cost the most, and which to keep in float.

1. Quantize everything (the Q/DQ rules of :mod:`.qdq`), measure mIoU of FP32 and INT8 on a few
   validation images (with labels).
2. For each quantized Conv, quantize again with that one node kept in float and measure how much
   pixel agreement with FP32 it wins back (the sensitivity).
3. Keep the most sensitive nodes in float, one by one, until INT8 mIoU >= FP32 mIoU - budget.

Nodes kept in float are FP32 in the graph; TensorRT's strongly typed build runs them in FP32
(an FP16 island would need FP16 casts that ONNX Runtime's CPU kernels cannot run natively, so the
CPU prediction would no longer match the engine).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from ..data import SegDataset
from ..metrics import Agreement, SegMetrics
from ..runtime.ort import OrtBackend
from .calibrate import CalibrationList
from .qdq import quantize_onnx

log = logging.getLogger(__name__)


@dataclass
class MixedResult:
    fp32_miou: float
    int8_miou: float
    final_miou: float
    budget: float
    kept_float: List[str] = field(default_factory=list)
    sensitivity: Dict[str, float] = field(default_factory=dict)  # agreement points won back by keeping it float
    steps: List[Dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def markdown(self) -> str:
        lines = [f"# Mixed precision (budget {self.budget} mIoU points)", "",
                 f"FP32 {self.fp32_miou:.2f}, all-INT8 {self.int8_miou:.2f}, final {self.final_miou:.2f} mIoU.", "",
                 "| kept in float | sensitivity (agreement points) | mIoU after |", "|---|---|---|"]
        for step in self.steps:
            lines.append(f"| {step['node']} | {self.sensitivity[step['node']]:+.3f} | {step['miou']:.2f} |")
        if not self.steps:
            lines.append("| (none: all-INT8 is within budget) | | |")
        return "\n".join(lines) + "\n"


def score(path: Union[str, Path], samples: Sequence[Any], reference: Sequence[Any] = ()) -> Dict[str, Any]:
    """mIoU (points) on ``samples`` and, given reference predictions, agreement with them."""
    from ..validate import predict_whole

    backend = OrtBackend(path)
    metrics, agreement, preds = SegMetrics(backend.info.num_classes), Agreement(), []
    for i, s in enumerate(samples):
        pred = predict_whole(backend, s.image, s.label.shape[:2])
        metrics.update(pred, s.label)
        preds.append(pred)
        if reference:
            agreement.update(pred, reference[i])
    return {"miou": 100 * metrics.miou, "agreement": 100 * agreement.value if reference else 100.0, "preds": preds}


def mixed_precision(fp32_onnx: Union[str, Path], calibration: CalibrationList, dataset: SegDataset, budget: float,
                    out: Union[str, Path], method: str = "entropy", num_images: int = 8,
                    max_float: Optional[int] = None) -> MixedResult:
    """Write the mixed INT8/float ONNX to ``out`` and return what was kept in float and why.

    ``max_float`` caps how many layers may stay in float (None: as many as the budget needs).
    """
    samples = [dataset[i] for i in range(min(num_images, len(dataset)))]
    ref = score(fp32_onnx, samples)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "ranges.cache"  # calibrate once; every variant reuses the tensor ranges
        full = quantize_onnx(fp32_onnx, calibration, Path(tmp) / "all.onnx", method, cache=cache)
        base = score(full, samples, ref["preds"])
        result = MixedResult(ref["miou"], base["miou"], base["miou"], budget)
        import onnx

        convs = [n.name for n in onnx.load(str(full)).graph.node if n.op_type == "Conv"
                 and any(i.endswith("_DequantizeLinear_Output") for i in n.input)]
        if base["miou"] < ref["miou"] - budget:
            for name in convs:
                trial = quantize_onnx(fp32_onnx, calibration, Path(tmp) / "trial.onnx", method, keep_float=[name],
                                      cache=cache)
                result.sensitivity[name] = score(trial, samples, ref["preds"])["agreement"] - base["agreement"]
                log.info("sensitivity %s: %+.3f agreement points", name, result.sensitivity[name])
            for name in sorted(result.sensitivity, key=result.sensitivity.get, reverse=True):
                if result.final_miou >= ref["miou"] - budget or len(result.kept_float) == max_float:
                    break
                result.kept_float.append(name)
                trial = quantize_onnx(fp32_onnx, calibration, Path(tmp) / "trial.onnx", method,
                                      keep_float=result.kept_float, cache=cache)
                result.final_miou = score(trial, samples)["miou"]
                result.steps.append({"node": name, "miou": result.final_miou})
        quantize_onnx(fp32_onnx, calibration, out, method, keep_float=result.kept_float, cache=cache,
                      calibration_info={"mixed_budget": budget, "kept_float_sensitivity":
                                        {k: result.sensitivity[k] for k in result.kept_float}})
    return result
