"""Layer-wise comparison of two artifacts with Polygraphy: where does the artifact leave the reference?

Both graphs run on the same preprocessed images with every intermediate tensor marked as an output
(Polygraphy's ``ModifyOutputs(outputs=MARK_ALL)`` -> ``SessionFromOnnx`` -> ``OnnxrtRunner``; for an
engine, ``NetworkFromOnnxPath`` -> ``ModifyNetworkOutputs(MARK_ALL)`` -> ``EngineFromNetwork`` ->
``TrtRunner``). Both runners take one image at a time, and Polygraphy's compare functions
(``L2CompareFunc``, ``CosineSimilarityCompareFunc``, ``SimpleCompareFunc``) compute, per tensor and image,
the L2 distance, the cosine similarity and the maximum absolute difference before the next image runs, so
memory holds one image's tensors, not all of them. We only pool those over the images and divide the L2
distance by the reference tensor's norm (relative L2).

Tensors are matched by name. Our exporter, the FP16 converter and the quantizer keep the names of the
reference graph; what they add is mapped or left out, and the report says which:

* INT8 (Q/DQ): ``X_DequantizeLinear_Output`` (the rounded copy of ``X`` that a quantized node reads)
  is compared with ``X`` of the reference and reported as the *input Q/DQ* of the node(s) that read
  it (so a bad activation scale is named by the layer it feeds). INT8 ``_QuantizeLinear_Output``
  tensors and the dequantized weights have no float counterpart and are left out.
* FP16: the boundary Casts (``images_cast_to_...``, ``..._input_cast_0``) are copies of tensors that
  are compared already; left out. FP16 islands (``NODE/fp16_out``) are cast back to the original
  name, which is compared.

First divergence (:func:`first_divergence`): the first tensor, in graph order, whose layer
adds more than ``factor`` (3.5) times the median error that earlier layers of the same kind added, and more than
``factor`` times the rounding floor of the artifact's precision (:data:`NOISE_FLOOR`); see
:func:`first_divergence`.
"""

from __future__ import annotations

import logging
import math
import re
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..deploy import PREPROCESS_SCOPE, DeployInfo
from ..deps import require
from ..errors import UserError
from ..runtime.inference import prepare

log = logging.getLogger(__name__)

# Rounding floor per artifact precision: error one layer may add (relative L2) without any explanation.
# fp32: float32 re-association of sums (another kernel or graph) stays below 1e-5.
# fp16: one FP16 rounding is 2^-11 ~ 4.9e-4 relative (rms ~2.8e-4); measured per-layer additions <= 2e-3.
# int8: one 8-bit rounding of an activation with an entropy-calibrated scale adds 1-4 % relative L2 (step =
#       amax/127, activations fill a small part of the range, entropy clips the tail; measured: 4.2 % at the
#       input of stem.3 of the trained r18_os8_camvid at 360x480, 1-2 % elsewhere), so 2 % (x3 = 6 %).
NOISE_FLOOR = {"fp32": 1e-5, "fp16": 2e-3, "int8": 2e-2}  # by DeployInfo.precision (ARTIFACT_PRECISIONS)
# FACTOR: chosen on r18_os8_camvid (random seed 0 at 64x128, trained at 360x480; CamVid test images), checked on
# other models and the val split by benchmarks/debug_factor.py (results/debug_factor_vm_2026-12-04.json). The
# trained model at 180x240: untouched INT8 at most 1.6, FP16 0.7; one Q/DQ scale x8 gives 4.1-5.5 (named first at
# 4 depths of 4), x4 2.0-2.8 and x2 1.0-1.4 (missed: x2 is within the rounding noise of untouched layers; x4 needs
# a factor under 2.0, which the trained 360x480 graph's 2.75 already exceeds). Random weights: untouched INT8
# reaches 3.1 and 4.3 (narrow seed 2: named falsely) while x8 gives 2.4-5.2, so no factor separates them there.
# What it points at: gross errors (a scale ~8x off, a Conv's weights x1.5 gives > 10^3), not small ones.
FACTOR = 3.5
# Ops that only select or copy values: they add no rounding; an apparent growth there is the change of the
# tensor's norm (ReLU drops the negative part), so they are never named and do not set the noise.
EXACT_OPS = ("Relu", "MaxPool", "Concat", "Cast", "Reshape", "Flatten", "Transpose", "Identity")


@dataclass
class TensorRow:
    tensor: str  # reference tensor name
    artifact_tensor: str  # what it was compared with
    op: str  # op type of the node that produced it (in the artifact)
    node: str  # that node's name
    module: str  # the PyTorch module it comes from
    mapping: str  # "same name" or how the names were mapped
    rel_l2: float
    max_abs: float
    cosine: float
    growth: float = 0.0  # error added at this layer: sqrt(rel_l2^2 - max(rel_l2 of its inputs)^2), 0 if negative
    inputs: List[str] = field(default_factory=list)  # tensors (row keys) this one is computed from


@dataclass
class Comparison:
    reference: str
    artifact: str
    precision: str
    images: List[str]
    rows: List[TensorRow]
    first_divergence: Optional[Dict[str, Any]]
    rule: Dict[str, Any]
    unmatched: List[str]  # artifact tensors left out (no float counterpart)
    notes: List[str]
    engine: bool = False

    def worst_growth(self, n: int = 5) -> List[TensorRow]:
        return sorted(self.rows, key=lambda r: r.growth, reverse=True)[:n]

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["largest_growth"] = [{"tensor": r.tensor, "module": r.module, "growth": r.growth, "rel_l2": r.rel_l2}
                               for r in self.worst_growth()]
        return d


def module_of(node_name: str) -> str:
    """PyTorch module path of an ONNX node named by the TorchScript exporter.

    ``/backbone_net/layer3/layer3.5/conv2/Conv`` -> ``backbone_net.layer3.5.conv2``: the exporter writes
    each scope as the child's name relative to its grandparent (``layer3.5`` under ``layer3``), so a
    segment that extends the previous one replaces it. Nodes of the deploy head (``/Resize``,
    ``/ArgMax``) -> ``(deploy head)``; names that are not exporter scopes (e.g. a quantizer's
    ``X_QuantizeLinear``) are returned unchanged.
    """
    if not node_name.startswith("/"):
        return node_name
    parts = [p for p in node_name.split("/") if p][:-1]  # last part is the op (Conv, Relu_1, ...)
    path: List[str] = []
    for part in parts:
        if path and part.startswith(path[-1] + "."):
            path[-1] = part
        else:
            path.append(part)
    if path:
        path[-1] = re.sub(r"_\d+$", "", path[-1])  # `relu_1`: the second call of module `relu`
    return _deploy_to_model(".".join(path)) or "(deploy head)"


def _deploy_to_model(name: str) -> str:
    """Names of the export wrapper (``export/deploy_model.py``) -> the model's own modules: its fixed pools
    ``ppm_net.pools.I`` replace ``ppm_net.branches.I.0`` (the adaptive pool), ``ppm_net.convs.I.J`` are
    ``ppm_net.branches.I.(J+1)``."""
    m = re.fullmatch(r"ppm_net\.pools\.(\d+)(\..*)?", name)
    if m:
        return f"ppm_net.branches.{m.group(1)}.0"
    m = re.fullmatch(r"ppm_net\.convs\.(\d+)\.(\d+)(\..*)?", name)
    if m:
        return f"ppm_net.branches.{m.group(1)}.{int(m.group(2)) + 1}{m.group(3) or ''}"
    return name


# ---------------------------------------------------------------- runners


def fake_quant_level(info: DeployInfo) -> Any:
    """ONNX Runtime graph optimization level for an artifact: INT8 graphs meant for TensorRT run as float
    fake quantization (``ORT_DISABLE_ALL``, :func:`pspnet_trt.runtime.ort.fake_quant_for`, as the validator
    and the sensitivity search run them), so the figures do not depend on which CPU runs them. ``None``:
    ONNX Runtime's default."""
    from ..runtime.ort import fake_quant_for

    if fake_quant_for(info):
        return require("onnxruntime", "debug").GraphOptimizationLevel.ORT_DISABLE_ALL
    return None


def onnx_runner(path: Path, name: str, info: DeployInfo) -> Any:
    """Polygraphy ONNX Runtime runner with every tensor of ``path`` marked as an output."""
    require("polygraphy", "debug")
    from polygraphy import constants
    from polygraphy.backend.onnx import BytesFromOnnx, ModifyOutputs, OnnxFromPath
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    require("onnxruntime", "debug").set_default_logger_severity(3)  # no warning per unused Q/DQ initializer
    marked = ModifyOutputs(OnnxFromPath(str(path)), outputs=constants.MARK_ALL)
    return OnnxrtRunner(SessionFromOnnx(BytesFromOnnx(marked), graph_optimization_level=fake_quant_level(info)),
                        name=name)


def trt_runner(onnx_path: Path, name: str, precision: str) -> Any:  # pragma: no cover - needs TensorRT and a GPU
    """Polygraphy TensorRT runner for an engine rebuilt from ``onnx_path`` with every tensor marked as an
    output (a built engine has only its own outputs). Marking outputs stops TensorRT from fusing across
    them, so this engine is not the deployed one: it shows where the precision loses, not the fusions."""
    require("polygraphy", "debug")
    trt = require("tensorrt", "debugging an engine")
    from polygraphy import constants
    from polygraphy.backend.trt import (
        CreateConfig,
        EngineFromNetwork,
        ModifyNetworkOutputs,
        NetworkFromOnnxPath,
        TrtRunner,
    )

    from ..trt.version import capabilities

    caps = capabilities(trt.__version__)
    # Strongly typed (TensorRT >= 9): precision comes from the graph, as in `pspnet-trt build`.
    network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=caps.strongly_typed)
    network = ModifyNetworkOutputs(network, outputs=constants.MARK_ALL)
    weak = not caps.strongly_typed
    config = CreateConfig(fp16=weak and precision == "fp16", int8=weak and precision == "int8")
    return TrtRunner(EngineFromNetwork(network, config=config), name=name)


# ---------------------------------------------------------------- matching


def _float_tensors(model: Any) -> Dict[str, Any]:
    """Node output name -> producing node, for every node output of ``model``."""
    return {o: n for n in model.graph.node for o in n.output if o}


def dq_map(model: Any) -> Dict[str, Tuple[str, List[str]]]:
    """``X_DequantizeLinear_Output`` -> (``X``, names of the nodes that read it), for activation Q/DQ
    pairs (``X`` produced by a node or a graph input; weights are initializers and left out)."""
    producers = _float_tensors(model)
    inits = {i.name for i in model.graph.initializer}
    consumers: Dict[str, List[str]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.name)
    out = {}
    for n in model.graph.node:
        if n.op_type != "DequantizeLinear":
            continue
        q = producers.get(n.input[0])
        if q is None or q.op_type != "QuantizeLinear" or q.input[0] in inits:
            continue
        out[n.output[0]] = (q.input[0], consumers.get(n.output[0], []))
    return out


def _value_types(model: Any) -> Dict[str, int]:
    onnx = require("onnx", "debug")
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    return {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.output) + list(g.input)}


FLOAT_TYPES = (1, 10, 11, 16)  # float, float16, double, bfloat16


def network_input(art: Any) -> Optional[str]:
    """The tensor of a raw-frame / pixels graph that its in-graph preprocessing (:data:`PREPROCESS_SCOPE`)
    hands to the network: the counterpart of a normalized graph's input."""
    inside = {o for n in art.graph.node if n.name.startswith(PREPROCESS_SCOPE) for o in n.output}
    for n in art.graph.node:
        if not n.name.startswith(PREPROCESS_SCOPE):
            for i in n.input:
                if i in inside:
                    return str(i)
    return None


def plan_rows(ref: Any, art: Any) -> Tuple[List[Tuple[str, str, Any, str, List[str]]], List[str]]:
    """Rows to compare, in the artifact's graph order: (row key, artifact tensor, art node, mapping,
    input row keys). Also the artifact tensors left out. An artifact that preprocesses in its graph (bgr8,
    pixels) has another input than the reference: its network input stands for the reference's input."""
    ref_types = _value_types(ref)
    ref_tensors = set(_float_tensors(ref)) | {i.name for i in ref.graph.input}
    dqs = dq_map(art)
    rows, unmatched = [], []
    # artifact tensor -> row key of its float counterpart
    inner = network_input(art)
    keys = {inner: ref.graph.input[0].name} if inner else {i.name: i.name for i in art.graph.input}
    for node in art.graph.node:
        for out in node.output:
            if not out:
                continue
            if out in dqs:
                src, readers = dqs[out]
                key = f"{src} @ input Q/DQ of {', '.join(readers)}"
                rows.append((key, out, node, f"{out} (artifact) = {src} rounded by its Q/DQ pair", [keys.get(src, src)]))
                keys[out] = key
            elif out in ref_tensors and ref_types.get(out) in FLOAT_TYPES:
                ins = [keys.get(i, i) for i in node.input if i in keys]
                rows.append((out, out, node, "same name", ins))
                keys[out] = out
            elif node.op_type in ("Cast", "QuantizeLinear", "DequantizeLinear") and node.input and node.input[0] in keys:
                keys[out] = keys[node.input[0]]  # a copy of a compared tensor (boundary/island Casts)
                unmatched.append(out)
            else:
                unmatched.append(out)
    return rows, unmatched


# ---------------------------------------------------------------- running and comparing


def _strict_find(output_name: str, index: int, iter_result: Any) -> Optional[List[str]]:
    return [output_name] if output_name in iter_result else None


def compare_layers(reference: Path, artifact: Path, images: Sequence[np.ndarray], image_names: Sequence[str],
                   ref_info: DeployInfo, art_info: DeployInfo, engine_onnx: Optional[Path] = None,
                   factor: float = FACTOR, floor: Optional[float] = None) -> Comparison:
    """Run both artifacts on ``images`` (BGR uint8; each runner gets them in its own input format through
    :func:`pspnet_trt.runtime.inference.prepare`) and compare every tensor both graphs have.

    ``engine_onnx``: ``artifact`` is a TensorRT engine built from this ONNX (it is rebuilt with every
    tensor marked, see :func:`trt_runner`)."""
    onnx = require("onnx", "debug")
    require("polygraphy", "debug")
    from polygraphy.comparator import (
        CosineSimilarityCompareFunc,
        IterationResult,
        L2CompareFunc,
        SimpleCompareFunc,
    )
    from polygraphy.logger import G_LOGGER

    ref_model = onnx.load(str(reference))
    art_model = onnx.load(str(engine_onnx or artifact))
    rows, unmatched = plan_rows(ref_model, art_model)
    if not rows:
        raise UserError(f"{artifact} and {reference} share no tensor names: is the artifact made from this reference?")
    art_runner = (trt_runner(engine_onnx, "artifact", art_info.precision) if engine_onnx is not None
                  else onnx_runner(artifact, "artifact", art_info))
    runners = [onnx_runner(reference, "reference", ref_info), art_runner]
    def feed(info: DeployInfo, image: np.ndarray) -> Dict[str, np.ndarray]:
        return {info.input_name: prepare([image], info, batch=info.batch)[0]}

    funcs = [L2CompareFunc(l2_threshold=math.inf, find_output_func=_strict_find),
             CosineSimilarityCompareFunc(cosine_similarity_threshold=-1.0, find_output_func=_strict_find),
             SimpleCompareFunc(atol=math.inf, rtol=math.inf, find_output_func=_strict_find)]
    l2, cosine, simple = {}, {}, {}  # type: Dict[str, List[Any]], Dict[str, List[Any]], Dict[str, List[Any]]
    ref_norms: Dict[str, List[float]] = {}
    # One image at a time through both runners, compared at once and dropped: only per-tensor figures are kept.
    with G_LOGGER.verbosity(G_LOGGER.CRITICAL), runners[0] as ref_runner, runners[1] as art_runner:
        for image in images:
            # graph inputs too: the INT8 graph rounds the image by a Q/DQ pair
            ref_feed = feed(ref_info, image)
            ref_it, art_it = {**ref_feed, **ref_runner.infer(ref_feed)}, art_runner.infer(feed(art_info, image))
            # Each row compares reference[src] with artifact[tensor] under one name (its key).
            r_out, a_out = {}, {}
            for key, art_name, _node, _mapping, _ins in rows:
                src = key.split(" @ ")[0]
                if src in ref_it and art_name in art_it:
                    r_out[key], a_out[key] = ref_it[src], art_it[art_name]
                    ref_norms.setdefault(key, []).append(float(np.linalg.norm(np.asarray(ref_it[src], np.float64))))
            ref_iter = IterationResult(r_out, runner_name="reference")
            art_iter = IterationResult(a_out, runner_name="artifact")
            for func, store in zip(funcs, (l2, cosine, simple)):
                for name, res in func(ref_iter, art_iter).items():
                    store.setdefault(name, []).append(res)
            del ref_it, art_it, r_out, a_out, ref_iter, art_iter
    out_rows = []
    for key, art_name, node, mapping, ins in rows:
        if key not in l2:
            continue
        num = math.sqrt(sum(v.l2_norm ** 2 for v in l2[key]))
        den = math.sqrt(sum(n ** 2 for n in ref_norms[key]))
        rel = num / den if den > 0 else (0.0 if num == 0 else math.inf)
        cos = float(np.mean([v.cosine_similarity for v in cosine[key]]))
        max_abs = max(v.max_absdiff for v in simple[key])
        readers = key.split(" @ input Q/DQ of ")[1].split(", ") if " @ " in key else [node.name]
        module = ", ".join(dict.fromkeys(module_of(r) for r in readers))
        out_rows.append(TensorRow(key, art_name, node.op_type, node.name, module, mapping, rel, float(max_abs), cos,
                                  inputs=ins))
    errors = {r.tensor: r.rel_l2 for r in out_rows}
    for r in out_rows:
        before = max([errors.get(i, 0.0) for i in r.inputs] or [0.0])
        r.growth = math.sqrt(max(r.rel_l2 ** 2 - before ** 2, 0.0)) if math.isfinite(r.rel_l2) else math.inf
    precision = art_info.precision
    floor = NOISE_FLOOR[precision] if floor is None else floor
    first = first_divergence(out_rows, factor, floor)
    notes = []
    if any(" @ " in r.tensor for r in out_rows):
        notes.append("INT8 Q/DQ renames: each `X_DequantizeLinear_Output` of the artifact is compared with `X` of the "
                     "reference and shown as the input Q/DQ of the layer that reads it.")
    if engine_onnx is not None:
        notes.append("The artifact is a TensorRT engine: it was rebuilt from its ONNX with every tensor marked as an "
                     "output, which stops TensorRT from fusing layers across those tensors. The numbers show where "
                     "precision is lost layer by layer; the deployed engine's fusions (and their rounding) differ.")
    if fake_quant_level(art_info) is not None:
        notes.append("INT8 ran in ONNX Runtime as fake quantization (graph optimizations off), so the figures do not "
                     "depend on the CPU's integer kernels.")
    return Comparison(str(reference), str(artifact), precision, list(image_names), out_rows,
                      None if first is None else {"tensor": first.tensor, "module": first.module, "op": first.op,
                                                  "rel_l2": first.rel_l2},
                      {"name": "first tensor whose added error (growth) > factor * max(floor, median growth of the "
                               "earlier tensors of the same kind: Q/DQ or op type)",
                       "factor": factor, "floor": floor, "precision": precision},
                      unmatched, notes, engine=engine_onnx is not None)


def kind_of(row: TensorRow) -> str:
    return "Q/DQ" if " @ input Q/DQ of " in row.tensor else row.op


def first_divergence(rows: Iterable[TensorRow], factor: float = FACTOR, floor: float = 1e-5) -> Optional[TensorRow]:
    """First row (graph order) whose added error is ``> factor * max(floor, noise)``, where ``noise`` is
    the median added error of the earlier rows of the same kind (:func:`kind_of`).

    Added error (``growth``): errors from independent sources add in quadrature, so a layer whose output
    has relative L2 ``e`` and whose inputs had at most ``e_in`` added ``sqrt(e^2 - e_in^2)``. Comparing
    it with earlier layers of the same kind compares like with like: every INT8 Q/DQ pair rounds its
    tensor to 256 levels, every Conv sums many rounded products; a scale or weight that is wrong makes
    its layer add several times what the same kind of layer typically added before. The median, not the
    maximum: one layer that is noisier than the rest (a trained model's stem.3 input rounds with 4 % error,
    the other Q/DQ pairs with 1-2 %) must not hide a later wrong scale. Ops in :data:`EXACT_OPS` are skipped.

    Measured (``factor`` 3.5, floors of :data:`NOISE_FLOOR`; r18_os8_camvid, random weights at 64x128 and
    trained at 360x480): the largest ratio on untouched INT8 graphs was 2.4 and 2.75, on FP16 graphs 1.1;
    a Q/DQ scale x8 gave 4.6 and 5.3, a Conv's weights x1.5 more than 10^3."""
    noise: Dict[str, List[float]] = {}
    for r in rows:
        kind = kind_of(r)
        if r.op in EXACT_OPS:
            continue
        earlier = noise.setdefault(kind, [])
        typical = statistics.median(earlier) if earlier else 0.0
        if not math.isfinite(r.growth) or r.growth > factor * max(floor, typical):
            return r
        earlier.append(r.growth)
    return None

