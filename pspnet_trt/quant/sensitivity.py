"""Accuracy-driven mixed precision: which quantized layers cost the most, and which to keep in float.

1. Quantize everything (the Q/DQ rules of :mod:`.qdq`), measure mIoU of FP32 and INT8 on a few
   validation images (with labels).
2. For each quantized Conv, quantize again with that one node kept in float and measure how much
   pixel agreement with FP32 it wins back (the sensitivity).
3. Keep the most sensitive nodes out of INT8, one by one, until INT8 mIoU >= FP32 mIoU - budget.

Nodes kept out of INT8 run in FP16 by default: FP16 islands in the graph (see :mod:`.qdq`), which
a strongly typed TensorRT build runs in FP16 and ONNX Runtime emulates on the CPU (FP32 arithmetic
on FP16-rounded tensors). Sensitivities are measured with the same islands, so the search sees the
numerics the engine will have. ``float_dtype="fp32"`` keeps them as exported.
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
from .qdq import excluded_nodes, quantize_onnx

log = logging.getLogger(__name__)


@dataclass
class MixedResult:
    fp32_miou: float
    int8_miou: float
    final_miou: float
    budget: float
    float_dtype: str = "fp16"
    kept_float: List[str] = field(default_factory=list)
    sensitivity: Dict[str, float] = field(default_factory=dict)  # agreement points won back by keeping it float
    steps: List[Dict[str, Any]] = field(default_factory=list)
    excluded_by_rule: Dict[str, str] = field(default_factory=dict)  # node -> why it is never quantized
    numerics: str = ""  # how the INT8 variants were run (fake-quantization for TensorRT graphs)

    @property
    def budget_met(self) -> bool:
        """Final mIoU within ``budget`` points of FP32 (False when --max-float or the layers ran out first)."""
        return self.final_miou >= self.fp32_miou - self.budget

    def to_dict(self) -> Dict[str, Any]:
        return {**asdict(self), "budget_met": self.budget_met}

    def markdown(self) -> str:
        lines = [f"# Mixed precision (budget {self.budget} mIoU points)", "",
                 f"FP32 {self.fp32_miou:.2f}, all-INT8 {self.int8_miou:.2f}, final {self.final_miou:.2f} mIoU "
                 "(on the sensitivity images).", "",
                 ("Budget met." if self.budget_met else f"**Budget not met**: the best reached is {self.final_miou:.2f} "
                  f"({self.final_miou - self.fp32_miou:+.2f} vs FP32, budget -{self.budget}) with "
                  f"{len(self.kept_float)} layers out of INT8."), "",
                 *([f"INT8 run as: {self.numerics}.", ""] if self.numerics else []),
                 f"## Kept out of INT8 by measurement (run in {self.float_dtype.upper()})", "",
                 "Most sensitive first; sensitivity = pixel agreement with FP32 won back by keeping that layer alone "
                 "out of INT8.", "",
                 "| layer | sensitivity (agreement points) | mIoU after |", "|---|---|---|"]
        for step in self.steps:
            lines.append(f"| {step['node']} | {self.sensitivity[step['node']]:+.3f} | {step['miou']:.2f} |")
        if not self.steps:
            reason = "all-INT8 is within budget" if self.int8_miou >= self.fp32_miou - self.budget else "none allowed"
            lines.append(f"| (none: {reason}) | | |")
        lines += ["", "## Kept in float by rule (as exported)", "", "| layer | why |", "|---|---|"]
        lines += [f"| {node} | {why} |" for node, why in self.excluded_by_rule.items()]
        if self.sensitivity:
            lines += ["", "## Sensitivity of every INT8 conv", "", "| layer | agreement points |", "|---|---|"]
            ranked = sorted(self.sensitivity.items(), key=lambda kv: kv[1], reverse=True)
            lines += [f"| {node} | {value:+.3f} |" for node, value in ranked]
        return "\n".join(lines) + "\n"


def score(path: Union[str, Path], samples: Sequence[Any], reference: Sequence[Any] = ()) -> Dict[str, Any]:
    """mIoU (points) on ``samples`` and, given reference predictions, agreement with them."""
    from ..runtime.inference import predict_images

    backend = OrtBackend(path)  # a TensorRT INT8 graph runs as fake-quantization: the same search on every CPU
    metrics, agreement, preds = SegMetrics(backend.info.num_classes), Agreement(), []
    for i, s in enumerate(samples):
        pred = predict_images(backend, [s.image], sizes=[s.label.shape[:2]])[0]
        metrics.update(pred, s.label)
        preds.append(pred)
        if reference:
            agreement.update(pred, reference[i])
    return {"miou": 100 * metrics.miou, "agreement": 100 * agreement.value if reference else 100.0, "preds": preds,
            "numerics": backend.numerics or ""}


def mixed_precision(fp32_onnx: Union[str, Path], calibration: CalibrationList, dataset: SegDataset, budget: float,
                    out: Union[str, Path], method: str = "entropy", num_images: int = 8,
                    max_float: Optional[int] = None, float_dtype: str = "fp16", target: str = "tensorrt") -> MixedResult:
    """Write the mixed INT8/float ONNX to ``out`` and return what was kept in float and why.

    ``max_float`` caps how many layers may stay out of INT8 (None: as many as the budget needs);
    they run in ``float_dtype``. ``target``: as in :func:`.qdq.quantize_onnx`. ``out`` is written
    whether or not the budget was met: check ``result.budget_met`` (the CLI exits 1 when it was not).
    """
    import onnx

    samples = [dataset[i] for i in range(min(num_images, len(dataset)))]
    ref = score(fp32_onnx, samples)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "ranges.cache"  # calibrate once; every variant reuses the tensor ranges

        def variant(path: Union[str, Path], keep: Sequence[str], **kwargs: Any) -> Path:
            return quantize_onnx(fp32_onnx, calibration, path, method, keep_float=keep, cache=cache,
                                 float_dtype=float_dtype, target=target, **kwargs)

        full = variant(Path(tmp) / "all.onnx", [])
        base = score(full, samples, ref["preds"])
        result = MixedResult(ref["miou"], base["miou"], base["miou"], budget, float_dtype,
                             excluded_by_rule=excluded_nodes(onnx.load(str(fp32_onnx))), numerics=base["numerics"])
        convs = [n.name for n in onnx.load(str(full)).graph.node if n.op_type == "Conv"
                 and any(i.endswith("_DequantizeLinear_Output") for i in n.input)]
        if base["miou"] < ref["miou"] - budget:
            for name in convs:
                trial = variant(Path(tmp) / "trial.onnx", [name])
                result.sensitivity[name] = score(trial, samples, ref["preds"])["agreement"] - base["agreement"]
                log.info("sensitivity %s: %+.3f agreement points", name, result.sensitivity[name])
            for name in sorted(result.sensitivity, key=result.sensitivity.get, reverse=True):
                if result.final_miou >= ref["miou"] - budget or len(result.kept_float) == max_float:
                    break
                result.kept_float.append(name)
                result.final_miou = score(variant(Path(tmp) / "trial.onnx", result.kept_float), samples)["miou"]
                result.steps.append({"node": name, "miou": result.final_miou})
        variant(out, result.kept_float, calibration_info={
            "mixed_budget": budget, "kept_float_sensitivity": {k: result.sensitivity[k] for k in result.kept_float}})
    return result
