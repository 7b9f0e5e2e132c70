"""``--fix BUDGET``: keep the fewest layers of an FP16/INT8 artifact in higher precision so that its mIoU
on the debug images is within ``BUDGET`` points of the reference.

Candidates are the artifact's reduced-precision Convs, ranked by the error they add in the layer-wise
comparison (:mod:`.compare`; a Conv's score is the larger of the error added by its input Q/DQ pair and
by the Conv itself). :func:`fewest_kept` bisects over the number ``k`` of top-ranked layers kept (as
Polygraphy's ``debug precision`` bisects over layers): all kept must meet the budget (else exit 1), none
kept is tried first, and it assumes that keeping more of the ranked layers never loses mIoU.

* INT8: the variants are made by :func:`pspnet_trt.quant.qdq.quantize_onnx` from the FP32 reference with
  ``keep_float`` (what ``quantize --mixed-budget`` does; the calibration ranges are computed once and
  reused) and scored by :func:`pspnet_trt.quant.sensitivity.score`: the same code as the mixed-precision
  search, seen from the other side (ranked by the debug comparison instead of one quantization per layer).
* FP16: our own pass, :func:`fp32_islands`: the FP16 artifact with each kept Conv turned into
  ``Cast(fp32) -> Conv(fp32 weights of the reference) -> Cast(fp16)``, the mirror image of the FP16
  islands in :mod:`pspnet_trt.quant.qdq` (onnxconverter-common's ``node_block_list`` produced an invalid
  graph here).
"""

from __future__ import annotations

import copy
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..deps import require
from ..errors import UserError
from .compare import Comparison

log = logging.getLogger(__name__)


@dataclass
class FixResult:
    budget: float
    method: str
    float_dtype: str
    reference_miou: float
    artifact_miou: float
    fixed_miou: float
    met: bool
    candidates: List[str]
    kept: List[str]
    trials: List[Dict[str, Any]] = field(default_factory=list)  # {"k": layers kept, "miou": ...}, in trial order
    out: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def fewest_kept(n: int, meets: Callable[[int], bool]) -> Optional[int]:
    """Smallest ``k`` in ``0..n`` with ``meets(k)``, by bisection (``meets`` assumed monotone in ``k``);
    ``None`` when even ``meets(n)`` is false. Calls ``meets(0)`` and ``meets(n)`` first."""
    if meets(0):
        return 0
    if n == 0 or not meets(n):
        return None
    lo, hi = 0, n  # meets(lo) is false, meets(hi) is true
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if meets(mid):
            hi = mid
        else:
            lo = mid
    return hi


def rank_convs(comparison: Comparison, candidates: Sequence[str]) -> List[str]:
    """``candidates`` (Conv node names) by the error they add, largest first (graph order breaks ties)."""
    score: Dict[str, float] = {c: 0.0 for c in candidates}
    for r in comparison.rows:
        readers = r.tensor.split(" @ input Q/DQ of ")[1].split(", ") if " @ input Q/DQ of " in r.tensor else [r.node]
        for name in readers:
            if name in score:
                score[name] = max(score[name], r.growth)
    order = {c: i for i, c in enumerate(candidates)}
    return sorted(candidates, key=lambda c: (-score[c], order[c]))


def int8_convs(model: Any) -> List[str]:
    """Convs of a Q/DQ graph whose weights come from a DequantizeLinear (they run in INT8)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    return [n.name for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 1
            and producers.get(n.input[1]) is not None and producers[n.input[1]].op_type == "DequantizeLinear"]


def fp16_convs(model: Any) -> List[str]:
    """Convs of an FP16 graph with FP16 weights."""
    from onnx import TensorProto

    inits = {i.name: i for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 1
            and n.input[1] in inits and inits[n.input[1]].data_type == TensorProto.FLOAT16]


def fp32_islands(fp16_model: Any, fp32_model: Any, names: Sequence[str]) -> Any:
    """Copy of ``fp16_model`` with the Convs ``names`` run in FP32: ``Cast(fp32) -> Conv -> Cast(fp16)``,
    with the FP32 weights and bias of the same-named Conv of ``fp32_model``."""
    from onnx import TensorProto

    from ..quant.qdq import cast_island

    model = copy.deepcopy(fp16_model)
    graph = model.graph
    ref_nodes = {n.name: n for n in fp32_model.graph.node}
    ref_inits = {i.name: i for i in fp32_model.graph.initializer}
    by_name = {n.name: n for n in graph.node}
    missing = [n for n in names if n not in by_name or n not in ref_nodes or by_name[n].op_type != "Conv"]
    if missing:
        raise UserError(f"cannot keep {missing} in FP32: no Conv of that name in both graphs")
    nodes = []
    for node in graph.node:
        if node.name not in names:
            nodes.append(node)
            continue
        island = copy.deepcopy(node)
        for k, p in enumerate(ref_nodes[node.name].input[1:], start=1):
            init = copy.deepcopy(ref_inits[p])
            init.name = f"{node.name}/fp32_param{k}"
            graph.initializer.append(init)
            island.input[k] = init.name
        nodes += cast_island(island, TensorProto.FLOAT, TensorProto.FLOAT16)
    graph.ClearField("node")
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    graph.ClearField("initializer")
    graph.initializer.extend(keep)
    return model


def fix_artifact(comparison: Comparison, reference: Path, artifact: Path, art_info: Any, samples: Sequence[Any],
                 budget: float, out: Path, calibration: Optional[Path] = None, data_root: Optional[Path] = None,
                 float_dtype: Optional[str] = None) -> FixResult:
    """Write the fixed artifact to ``out`` (also when the budget cannot be met: then with every candidate
    kept) and return what was kept. ``samples``: the debug images with labels."""
    onnx = require("onnx", "debug --fix")
    from ..artifacts import attach_metadata, save_onnx
    from ..quant.sensitivity import score

    if art_info.precision not in ("fp16", "int8"):
        raise UserError(f"--fix works on FP16 and INT8 artifacts; {artifact} is {art_info.precision}")
    if not samples:
        raise UserError("--fix measures mIoU: give labelled images with --data ROOT --images N (not --images-dir)")
    art_model = onnx.load(str(artifact))
    ref_model = onnx.load(str(reference))
    ref_miou = score(reference, samples)["miou"]
    trials: List[Dict[str, Any]] = []

    with tempfile.TemporaryDirectory() as tmp:
        if art_info.precision == "int8":
            make, candidates, method, dtype = _int8_maker(art_model, art_info, reference, calibration, data_root,
                                                          Path(tmp), float_dtype)
        else:
            candidates = fp16_convs(art_model)
            method, dtype = "own FP32 islands in the FP16 graph (fp32_islands)", "fp32"

            def make(kept: Sequence[str], path: Path) -> Path:
                fixed = fp32_islands(art_model, ref_model, kept)
                extra = {**art_info.extra, "debug_fix": {"kept_fp32": list(kept), "budget": budget}}
                attach_metadata(fixed, art_info.with_(extra=extra))
                return save_onnx(fixed, path)

        ranked = rank_convs(comparison, candidates)
        cache: Dict[int, float] = {}

        def miou(k: int) -> float:
            if k not in cache:
                path = make(ranked[:k], Path(tmp) / f"trial_{k}.onnx")
                cache[k] = score(path, samples)["miou"]
                trials.append({"k": k, "miou": cache[k]})
                log.info("--fix: %d of %d layers kept in %s: mIoU %.2f (reference %.2f, budget %.2f)", k,
                         len(ranked), dtype, cache[k], ref_miou, budget)
            return cache[k]

        k = fewest_kept(len(ranked), lambda k: miou(k) >= ref_miou - budget)
        met = k is not None
        kept = ranked[:k] if k is not None else list(ranked)
        make(kept, out)
    art_miou = score(artifact, samples)["miou"]
    return FixResult(budget, method, dtype, ref_miou, art_miou, cache[len(kept)], met, ranked, kept, trials, str(out))


def _int8_maker(art_model: Any, art_info: Any, reference: Path, calibration: Optional[Path],
                data_root: Optional[Path], tmp: Path,
                float_dtype: Optional[str]) -> Tuple[Callable[[Sequence[str], Path], Path], List[str], str, str]:
    from ..artifacts import read_onnx_info
    from ..quant.calibrate import CalibrationList
    from ..quant.qdq import quantize_onnx

    if calibration is None:
        raise UserError("--fix on an INT8 artifact re-quantizes the FP32 reference with some layers kept in float: "
                        "give the calibration list it was made with (--calibration LIST)")
    if read_onnx_info(reference).precision != "fp32":
        raise UserError(f"--fix on an INT8 artifact needs the FP32 ONNX as --reference, got {reference}")
    q = art_info.extra.get("quantization", {})
    try:  # a list with its own "# root:" (or absolute paths) first; else relative to the debug --data root
        cal = CalibrationList.read(calibration)
    except UserError:
        if data_root is None:
            raise
        cal = CalibrationList.read(calibration, data_root)
    dtype = float_dtype or q.get("kept_float_dtype", "fp16")
    cache = tmp / "ranges.cache"  # calibrate once; every variant reuses the ranges (as --mixed-budget does)

    def make(kept: Sequence[str], path: Path) -> Path:
        return quantize_onnx(reference, cal, path, q.get("method", "entropy"), keep_float=kept, cache=cache,
                             target=q.get("target", "tensorrt"), float_dtype=dtype,
                             calibration_info={"debug_fix": {"kept_float": list(kept)}})

    return make, int8_convs(art_model), "quantize_onnx(keep_float=...) from the FP32 reference", dtype
