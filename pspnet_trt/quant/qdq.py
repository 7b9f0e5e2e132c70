"""INT8 as explicit Q/DQ in the ONNX graph (what TensorRT 8.5-11 and ONNX Runtime both run).

Quantizer: ``onnxruntime.quantization.quantize_static`` in QDQ format, calibrated on the CPU.
Placement rules we enforce (TensorRT's fusion rules for explicit quantization):

* Conv: INT8 input activation (per-tensor, symmetric) and INT8 weights (per output channel,
  symmetric, zero point 0), so Conv(+BN folded)+ReLU fuse into one INT8 kernel.
* Residual Add: only the residual input (the identity, or the downsample conv) is quantized; the
  main-branch Conv's output stays float, so TensorRT fuses the Add into that Conv, which reads the
  residual in INT8 (its placement guide; ModelOpt's ONNX PTQ does the same since its PR #425).
  :func:`residual_adds` finds the main branch from the graph: the longer path back to the fork.
* Inputs only: the outputs of Conv/Add carry no Q/DQ (TensorRT's placement guide); a Q/DQ pair
  feeding a ReLU (or MobileNetV2's ReLU6, a Clip) would round the pre-activation tensor once more with its own
  scale. Depthwise convs are Convs like any other (per-channel weights: one scale per channel of the group).
* Nothing around Resize, Concat, the pooling MatMuls/AveragePool, ArgMax or the final upsample:
  Q/DQ there would force reformatting for no gain (the PPM branches are tiny), and the logits
  stay in float so the argmax sees full precision. The PPM branch convs and the classifier stay
  float; they are found from the graph's structure (:func:`float_by_rule`), not from node names.
* Convs the mixed-precision pass keeps out of INT8 become FP16 islands (``float_dtype="fp16"``):
  ``Cast(fp16) -> Conv(fp16 weights) -> Cast(fp32)``, so a strongly typed TensorRT build runs them
  in FP16, not FP32; ONNX Runtime's CPU kernels compute them in FP32 on FP16-rounded inputs,
  weights and outputs, which predicts the engine's FP16 numerics.

:func:`check_placement` enforces all of the above on every quantized graph (symmetric INT8, per-channel
weights, whole INT8 Convs, the float layers, no Q/DQ where TensorRT would reformat).

ONNX Runtime runs this graph on the CPU as fake-quantization (``pspnet_trt.runtime.ort.session_options_for``:
optimizations off, Q/DQ as float rounding, Conv in float on the dequantized tensors), the CPU-independent
computation closest to TensorRT's exact INT32 sums, so the engine's INT8 mIoU is measured here before a
GPU is involved, and is the same on every CPU; not its speed. For fast CPU INT8 there is
``target="cpu"`` (UINT8 activations, outputs quantized so ONNX Runtime chains integer kernels; 7-bit
weights on x86 without VNNI, see :func:`cpu_settings`; not accepted by TensorRT).

Chosen over NVIDIA ModelOpt's ONNX PTQ by measurement (``benchmarks/quantizer_compare.py``): with
the same placement both give the same scales and the same predictions (ModelOpt calibrates with
ONNX Runtime's histogram calibrators too), and ``nvidia-modelopt[onnx]`` would pull onnxruntime-gpu
and CuPy into the environment.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ..artifacts import read_onnx_info
from ..cpu import CpuInfo, cpu_info
from ..deploy import FLOAT_PRECISIONS, PREPROCESS_SCOPE, DeployInfo
from ..deps import require
from ..errors import UserError
from .calibrate import CalibrationList

log = logging.getLogger(__name__)
METHODS = ("entropy", "percentile", "minmax")
# tensorrt: symmetric INT8 activations (zero point 0), what TensorRT's explicit quantization accepts.
# cpu: asymmetric UINT8 activations (U8S8), what x86 ONNX Runtime runs fastest (VNNI); not for TensorRT.
TARGETS = ("tensorrt", "cpu")
QUANTIZED_OPS = ["Conv", "Add"]
# Activations TensorRT fuses into the Conv before them (ReLU; ReLU6 exported as Clip; the others a backbone may
# bring): a Q/DQ pair feeding one would round the Conv's output once more and break the fusion.
FUSED_ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish")
FLOAT_DTYPES = FLOAT_PRECISIONS  # what the Convs kept out of INT8 run in


class _Reader:
    """onnxruntime CalibrationDataReader over a calibration list, in ranges (``set_range``): ORT's
    histogram calibrators keep every intermediate output of the images they are given, so we feed
    them one image at a time (``CalibStridedMinMax``) and they merge histograms in between.
    R-50 at 512x1024 needs > 21 GB for 64 images in one go and ~14 GB in chunks of 4, so one at a time."""

    def __init__(self, calibration: CalibrationList, info: DeployInfo) -> None:
        from tqdm import tqdm

        self.calibration, self.info = calibration, info
        # the one progress bar of a quantization: one step per calibration image through the FP32 graph
        self.bar = tqdm(total=len(calibration.images), desc="quantize: calibration", unit="img", leave=False)
        self.set_range(0, len(calibration.images))

    def __len__(self) -> int:
        return len(self.calibration.images)

    def set_range(self, start_index: int, end_index: int) -> None:
        part = CalibrationList(self.calibration.root, self.calibration.images[start_index:end_index])
        self.batches = iter(part.batches(self.info))

    def get_next(self) -> Optional[Dict[str, Any]]:
        batch = next(self.batches, None)
        if batch is None:
            return None
        if self.bar.n < self.bar.total:
            self.bar.update(1)
        return {self.info.input_name: batch}


class _LogWriter(io.TextIOBase):
    """A stdout that sends each printed line to this module's debug log."""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                log.debug("onnxruntime: %s", line.strip())
        return len(text)


class _OrtRootWarnings(logging.Filter):
    """Moves what onnxruntime.quantization logs on the root logger (its pre-processing advice, with a URL) to
    this module's debug log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "root" and "onnxruntime" in record.pathname.replace("\\", "/"):
            log.debug("onnxruntime: %s", record.getMessage())
            return False
        return True


@contextlib.contextmanager
def quiet_onnxruntime() -> Iterator[None]:
    """ONNX Runtime's quantization tool prints a line per calibration image ("Collecting tensor data and making
    histogram ...") and warns through the root logger; inside this block both go to the debug log (``-v``)
    instead of the console, so a quantization shows one progress bar and our own log lines."""
    root, ort_filter = logging.getLogger(), _OrtRootWarnings()
    root.addFilter(ort_filter)
    try:
        with contextlib.redirect_stdout(_LogWriter()):
            yield
    finally:
        root.removeFilter(ort_filter)


POOL_OPS = ("AveragePool", "GlobalAveragePool", "ReduceMean", "MatMul")  # how export/pools.py lowers the PPM pools
# ops a PPM branch or the classifier passes through on the way to the Concat / the outputs (first input = data)
# shape-only ops too: a raw-frame graph's tail is ArgMax -> Cast -> Resize(nearest) -> Squeeze -> Cast
_PASS_THROUGH = ("Relu", "Clip", "Cast", "BatchNormalization", "Identity", "Dropout", "QuantizeLinear",
                 "DequantizeLinear", "Resize", "Upsample", "ArgMax", "Softmax", "Squeeze", "Unsqueeze", "Reshape",
                 "Transpose", "Flatten")
WHY_PPM = "PPM branch 1x1 conv on the pooled bins: a few pixels, INT8 saves nothing"
WHY_CLASSIFIER = "classifier: logits stay in float so the argmax sees full precision"


def float_by_rule(model: Any) -> Dict[str, str]:
    """Convs that stay in float by rule, found from the graph's structure (not from node names, which
    another exporter or a renaming tool may change), each with the reason:

    * PPM branch convs: the Convs on a single-input chain ``pool -> ... -> Resize -> ... -> Concat``,
      where the pool is one of :data:`POOL_OPS` (AveragePool, or the MatMul pair of a non-uniform pool);
    * the classifier: the last Conv on the chain back from each graph output through
      Resize / ArgMax / Cast / shape-only ops (and Q/DQ, FP16-island Casts).

    Works on the FP32 export and on a quantized graph alike (Q/DQ and Cast nodes are walked through)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    out: Dict[str, str] = {}

    def chain(tensor: str) -> Tuple[List[Any], Optional[Any]]:
        """Nodes on the single-input chain upstream of ``tensor`` and the node that ended it."""
        nodes, node = [], producers.get(tensor)
        while node is not None and (node.op_type in _PASS_THROUGH or node.op_type == "Conv"):
            nodes.append(node)
            node = producers.get(node.input[0])
        return nodes, node

    for node in model.graph.node:
        if node.op_type != "Concat":
            continue
        for tensor in node.input:
            nodes, end = chain(tensor)
            if end is not None and end.op_type in POOL_OPS and any(n.op_type in ("Resize", "Upsample") for n in nodes):
                out.update({n.name: WHY_PPM for n in nodes if n.op_type == "Conv"})
    for output in model.graph.output:
        convs = [n for n in chain(output.name)[0] if n.op_type == "Conv"]
        if convs:
            out[convs[0].name] = WHY_CLASSIFIER
    return out


def excluded_nodes(model: Any) -> Dict[str, str]:
    """Conv/Add nodes that stay in float by rule (the PPM branches after the pools, the classifier),
    each with the reason (see :func:`float_by_rule`). Refuses a graph whose nodes are unnamed or share
    a name: the quantizer excludes nodes by name."""
    names = [n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS]
    if not all(names) or len(set(names)) != len(names):
        raise UserError("the ONNX graph has unnamed or duplicate Conv/Add node names; the quantizer selects nodes "
                        "by name: re-export it with `pspnet-trt export`")
    return float_by_rule(model)


def _branch_depths(tensor: str, producers: Dict[str, Any], limit: int = 64) -> Dict[str, int]:
    """Every tensor upstream of ``tensor`` with its distance in nodes (Q/DQ nodes do not count)."""
    depths, frontier = {tensor: 0}, [tensor]
    while frontier:
        name = frontier.pop()
        node = producers.get(name)
        if node is None or depths[name] >= limit:
            continue
        step = 0 if node.op_type in ("QuantizeLinear", "DequantizeLinear") else 1
        for parent in node.input[:1] if step == 0 else node.input:
            if parent in producers and depths[name] + step < depths.get(parent, limit + 1):
                depths[parent] = depths[name] + step
                frontier.append(parent)
    return depths


def _uses(graph: Any) -> Dict[str, int]:
    """How many node inputs read each tensor."""
    uses: Dict[str, int] = {}
    for n in graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    return uses


def _replace_nodes(graph: Any, nodes: Sequence[Any]) -> None:
    """Make ``nodes`` (topologically ordered) the graph's node list; copies first, as clearing the list
    may invalidate messages still referenced from it in some protobuf implementations."""
    nodes = [copy.deepcopy(n) for n in nodes]
    graph.ClearField("node")
    graph.node.extend(nodes)


def residual_adds(model: Any) -> int:
    """For each residual Add whose inputs are both quantized, drop the Q/DQ pair on its main-branch
    input (the longer path back to the fork; produced by a Conv), in place. Returns how many."""
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    uses = _uses(graph)
    dropped = set()
    for add in graph.node:
        dqs = [producers.get(i) for i in add.input]
        if add.op_type != "Add" or len(dqs) != 2 or any(d is None or d.op_type != "DequantizeLinear" for d in dqs):
            continue
        qs = [producers.get(d.input[0]) for d in dqs]
        if any(q is None or q.op_type != "QuantizeLinear" for q in qs):
            continue
        floats = [q.input[0] for q in qs]
        a, b = (_branch_depths(t, producers) for t in floats)
        common = set(a) & set(b)
        if not common:
            continue
        fork = min(common, key=lambda t: a[t] + b[t])
        if a[fork] == b[fork]:
            continue
        main = 0 if a[fork] > b[fork] else 1
        src = producers.get(floats[main])
        if src is None or src.op_type != "Conv" or uses[add.input[main]] > 1 or uses[qs[main].output[0]] > 1:
            continue
        add.input[main] = floats[main]
        dropped.update((dqs[main].output[0], qs[main].output[0]))
    _replace_nodes(graph, [n for n in graph.node if n.output[0] not in dropped])
    return len(dropped) // 2


def float_inputs(model: Any, names: Sequence[str]) -> None:
    """Let each kept-float Conv of ``names`` read its input before quantization (in place).

    ONNX Runtime puts one Q/DQ pair on a tensor that several nodes read; a Conv left out of INT8
    whose input tensor another consumer quantizes would still read it INT8-rounded (and TensorRT
    would see a Conv with an INT8 input and float weights). It reads the float tensor instead."""
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.name not in names or node.op_type != "Conv":
            continue
        dq = producers.get(node.input[0])
        q = producers.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is not None and q.op_type == "QuantizeLinear":
            node.input[0] = q.input[0]


# Ops that read a float tensor even where ONNX Runtime quantized it for another consumer (see unquantized_reads)
FLOAT_READERS = ("Resize", "Upsample", "Concat", "MatMul", "ArgMax", "AveragePool")


def unquantized_reads(model: Any, op_types: Sequence[str] = FLOAT_READERS) -> int:
    """Let every node of ``op_types`` read its inputs before quantization, in place; Q/DQ pairs no node reads any
    more are removed. Returns how many inputs were rewired.

    With ``--target cpu`` ONNX Runtime quantizes Conv outputs; where a backbone ends in a Conv without an
    activation (MobileNetV2's last projection conv), that quantized tensor would feed the pyramid pooling and its
    Concat, which the placement rules keep in float."""
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    rewired = 0
    for node in graph.node:
        if node.op_type not in op_types:
            continue
        for k, name in enumerate(node.input):
            dq = producers.get(name)
            q = producers.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear" and q.input[0] in producers:
                node.input[k] = q.input[0]
                rewired += 1
    while True:
        uses = _uses(graph)
        outputs = {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(uses.get(o) or o in outputs for o in n.output)]
        if not dead:
            return rewired
        names = {id(n) for n in dead}
        _replace_nodes(graph, [n for n in graph.node if id(n) not in names])


def fp16_islands(model: Any, names: Sequence[str]) -> None:
    """Turn the float Convs ``names`` of ``model`` (in place) into ``Cast(fp16) -> Conv -> Cast(fp32)``
    with FP16 weights and bias. Raises, changing nothing, if a name is not
    a float Conv with weights of its own."""
    import numpy as np
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    uses = _uses(graph)
    by_name = {n.name: n for n in graph.node}
    missing = sorted(set(names) - set(by_name))
    if missing:
        raise UserError(f"no such nodes in the graph: {missing}")
    for name in names:
        node = by_name[name]
        params = node.input[1:]
        if node.op_type != "Conv" or any(p not in inits or inits[p].data_type != TensorProto.FLOAT for p in params):
            raise UserError(f"{name} is not a float Conv with constant weights; only those can run in FP16")
        shared = [p for p in params if uses[p] > 1]
        if shared:
            raise UserError(f"{name}: weights {shared} are shared with another node; cannot make them FP16 alone")
    nodes = []
    for node in graph.node:
        if node.name not in names:
            nodes.append(node)
            continue
        for p in node.input[1:]:
            inits[p].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(inits[p]).astype(np.float16), p))
        nodes += cast_island(node, TensorProto.FLOAT16, TensorProto.FLOAT)
    _replace_nodes(graph, nodes)


def cast_island(node: Any, inner: int, outer: int) -> List[Any]:
    """``Cast(inner) -> node -> Cast(outer)`` (a copy of ``node`` whose parameters are already of the ``inner``
    type, e.g. FP16 weights in an FP32 graph, or FP32 weights in an FP16 one): the three nodes that replace it."""
    from onnx import TensorProto, helper

    tag = {TensorProto.FLOAT: "fp32", TensorProto.FLOAT16: "fp16"}
    island = copy.deepcopy(node)
    island.input[0], island.output[0] = f"{node.name}/{tag[inner]}_in", f"{node.name}/{tag[inner]}_out"
    return [helper.make_node("Cast", [node.input[0]], [island.input[0]], name=f"{node.name}/CastTo{tag[inner].title()}",
                             to=inner),
            island,
            helper.make_node("Cast", [island.output[0]], [node.output[0]], name=f"{node.name}/CastTo{tag[outer].title()}",
                             to=outer)]


def quantize_onnx(onnx_path: Union[str, Path], calibration: CalibrationList, out: Union[str, Path],
                  method: str = "entropy", keep_float: Sequence[str] = (), calibration_info: Optional[Dict[str, Any]] = None,
                  cache: Optional[Union[str, Path]] = None, target: str = "tensorrt",
                  float_dtype: str = "fp16", cpu: Optional[CpuInfo] = None) -> Path:
    """FP32 ONNX (from ``pspnet-trt export``) -> Q/DQ INT8 ONNX at ``out`` with pspnet-trt metadata.

    ``keep_float``: names of Convs left out of INT8 (the mixed-precision pass fills it); they run in
    ``float_dtype`` (``fp16``: FP16 islands, see the module docstring; ``fp32``: as exported).
    ``cache``: tensor ranges are stored there and reused (calibrate once, quantize many variants).
    ``target``: ``tensorrt`` (symmetric INT8 activations) or ``cpu`` (UINT8 activations, ONNX Runtime on x86).
    ``cpu``: the CPU a ``cpu`` target is for (default: this one, :func:`pspnet_trt.cpu.cpu_info`); see
    :func:`cpu_settings`.
    """
    onnx = require("onnx", "quantization")
    require("onnxruntime", "quantization")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from ..artifacts import attach_metadata, check_out, save_onnx

    check_out(out, "onnx", inputs=[onnx_path])
    if method not in METHODS:
        raise UserError(f"--method must be one of {METHODS}, got {method!r}")
    if target not in TARGETS:
        raise UserError(f"--target must be one of {TARGETS}, got {target!r}")
    if float_dtype not in FLOAT_DTYPES:
        raise UserError(f"--float-dtype must be one of {FLOAT_DTYPES}, got {float_dtype!r}")
    symmetric = target == "tensorrt"
    info = read_onnx_info(onnx_path)
    if info.precision != "fp32":
        raise UserError(f"{onnx_path} is a {info.precision} graph; quantize the FP32 export")
    calibration.check_input_size(info.input_size, onnx_path)
    model = onnx.load(str(onnx_path))
    cpu_choice = cpu_settings(cpu or cpu_info()) if target == "cpu" else {}
    if cpu_choice:
        log.info("target cpu for %s (%s): %s", cpu_choice["cpu"]["model"], cpu_choice["cpu"]["class"],
                 cpu_choice["reduce_range_why"])
    start = time.perf_counter()
    by_rule = excluded_nodes(model)
    preprocess = {n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS and n.name.startswith(PREPROCESS_SCOPE)}
    exclude = sorted(set(by_rule) | set(keep_float) | preprocess)
    reader = _Reader(calibration, info)
    with tempfile.TemporaryDirectory() as tmp, quiet_onnxruntime(), contextlib.closing(reader.bar):
        tmp_out = Path(tmp) / "q.onnx"
        quantize_static(
            str(onnx_path), str(tmp_out), reader, quant_format=QuantFormat.QDQ,
            op_types_to_quantize=QUANTIZED_OPS, per_channel=True, reduce_range=bool(cpu_choice.get("reduce_range")),
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
    if symmetric:
        log.info("residual Adds: Q/DQ kept on the residual input only (%d main-branch inputs left float)",
                 residual_adds(quantized))
    float_inputs(quantized, keep_float)
    rewired = unquantized_reads(quantized)
    if rewired:
        log.info("%d inputs of pooling/Resize/Concat read the float tensor another consumer quantizes", rewired)
    if float_dtype == "fp16":
        fp16_islands(quantized, keep_float)
    seconds = time.perf_counter() - start
    extra = {**info.extra, "quantization": {
        "tool": "onnxruntime.quantization", "method": method, "target": target, "calibration_images": len(calibration.images),
        "kept_float": list(keep_float), "kept_float_dtype": float_dtype, "excluded_by_rule": by_rule,
        "seconds": round(seconds, 1), **cpu_choice, **(calibration_info or {})}}
    attach_metadata(quantized, info.with_(precision="int8", extra=extra))
    check_placement(quantized, target)
    save_onnx(quantized, out)
    log.info("quantized %s -> %s (%s, %d images) in %.1f s", onnx_path, out, method, len(calibration.images), seconds)
    return Path(out)


def cpu_settings(cpu: CpuInfo) -> Dict[str, Any]:
    """How a ``--target cpu`` graph is quantized for ``cpu``, and what is recorded about it in the metadata.

    Always U8S8 (UINT8 activations, per-tensor asymmetric; INT8 weights, per output channel, symmetric):
    what ONNX Runtime's x86 integer kernels run fastest. On x86 without VNNI those kernels sum pairs of
    products in 16 bits (``vpmaddubsw``) and can saturate; ONNX Runtime's quantization docs recommend
    ``reduce_range`` (7-bit weights) there, which we follow (measured only on a VNNI CPU so far, where
    it is not used). With VNNI (or AMX) and on ARM there is no saturation and full 8-bit weights are kept.
    """
    reduce_range = cpu.u8s8_saturates
    why = ("this CPU has no VNNI: ONNX Runtime's U8S8 kernels sum in 16 bits and can saturate; 7-bit weights "
           "(reduce_range) avoid it, as ONNX Runtime's quantization docs recommend" if reduce_range else
           "VNNI / ARM dot products sum exactly in 32 bits: full 8-bit weights" if cpu.cpu_class != "unknown" else
           "CPU flags unknown: full 8-bit weights")
    return {"activations": "uint8 per-tensor asymmetric", "weights": "int8 per-channel symmetric",
            "reduce_range": reduce_range, "reduce_range_why": why, "cpu": cpu.to_dict()}


class PlacementError(RuntimeError):
    """A Q/DQ graph that breaks one of the placement rules (see the module docstring)."""


def check_placement(model: Any, target: str = "tensorrt") -> None:
    """Raise :class:`PlacementError` unless ``model`` follows every rule of the module docstring:

    * INT8 weights: an INT8 initializer, zero point 0 (symmetric), one scale per output channel (axis 0);
    * activations: per-tensor; with target ``tensorrt`` INT8 with zero point 0 (symmetric), with ``cpu``
      UINT8 or INT8;
    * a quantized Conv has both its input and its weights in INT8 (``tensorrt``: else TensorRT runs it in float);
    * no Q/DQ feeding Resize, Concat, the pooling MatMul/AveragePool or ArgMax, nor (``tensorrt``) an activation
      of :data:`FUSED_ACTIVATIONS` (ReLU, ReLU6 as Clip, ...): a quantized Conv output, where TensorRT fuses
      Conv+BN+activation into one kernel;
    * ``tensorrt``: a residual Add has at most one quantized input (TensorRT folds it into the main-branch Conv);
    * the PPM branch convs and the classifier (found from the graph's structure, :func:`float_by_rule`) have
      no Q/DQ at all.
    """
    import numpy as np
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    inits = {i.name: i for i in graph.initializer}
    forbidden = ("Resize", "Concat", "MatMul", "ArgMax", "AveragePool") + (FUSED_ACTIVATIONS if target == "tensorrt" else ())

    def from_dq(name: str) -> bool:
        src = producers.get(name)
        return src is not None and src.op_type == "DequantizeLinear"

    def const(name: str) -> Optional[Any]:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        src = producers.get(name)
        if src is not None and src.op_type == "Constant":
            return numpy_helper.to_array(src.attribute[0].t)
        return None

    for node in graph.node:
        if node.op_type in forbidden and any(from_dq(name) for name in node.input):
            raise PlacementError(f"Q/DQ feeds {node.op_type} node {node.name}: TensorRT would reformat there")
        if target == "tensorrt" and node.op_type == "Add" and len(node.input) == 2 and all(map(from_dq, node.input)):
            raise PlacementError(f"both inputs of {node.name} are quantized: TensorRT fuses a residual Add into the "
                                 "main-branch Conv only when that input is float")
        if node.op_type == "Conv" and target == "tensorrt" and from_dq(node.input[0]) != from_dq(node.input[1]):
            which = "input" if from_dq(node.input[0]) else "weights"
            raise PlacementError(f"Conv {node.name} has only its {which} in INT8: TensorRT runs an INT8 Conv only "
                                 "with both its input and its weights quantized")
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        scale, zero = const(node.input[1]), const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scale is None:
            raise PlacementError(f"{node.op_type} {node.name} has no constant scale")
        weight = node.op_type == "DequantizeLinear" and node.input[0] in inits
        if weight:
            w = inits[node.input[0]]
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            per_channel = scale.ndim == 1 and scale.size == w.dims[0] and (axis == 0 or w.dims[0] == 1)
            if w.data_type != TensorProto.INT8 or zero is None or zero.dtype != np.int8 or zero.any():
                raise PlacementError(f"weights {node.input[0]} are not symmetric INT8 (type {w.data_type}, zero point "
                                     f"{None if zero is None else zero.ravel()[:4]}): TensorRT needs zero point 0")
            if len(w.dims) == 4 and not per_channel:
                raise PlacementError(f"weights {node.input[0]} have scale shape {list(scale.shape)} (axis {axis}), "
                                     f"not one scale per output channel ({w.dims[0]}, axis 0)")
            continue
        if scale.size != 1:
            raise PlacementError(f"activation {node.input[0]} is quantized per channel (scale shape "
                                 f"{list(scale.shape)}): activations are per-tensor")
        if target == "tensorrt" and (zero is None or zero.dtype != np.int8 or zero.any()):
            raise PlacementError(f"activation {node.input[0]} is not symmetric INT8 (zero point "
                                 f"{None if zero is None else f'{zero.dtype} {zero.ravel()[0]}'}): TensorRT takes "
                                 "INT8 with zero point 0 only (the cpu target uses UINT8)")
    by_name = {n.name: n for n in graph.node}
    for name, why in float_by_rule(model).items():
        node = by_name[name]
        if any(from_dq(i) for i in node.input):
            raise PlacementError(f"{node.op_type} {name} is quantized but must stay float ({why})")


def qdq_summary(model: Any) -> Dict[str, Any]:
    """How many of the network's Conv/Add nodes run in INT8: a Conv whose weight, an Add whose inputs come from
    DequantizeLinear (a raw-frame graph's preprocessing, integer arithmetic, is not counted)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    quantized: Dict[str, int] = {}
    total: Dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OPS and not node.name.startswith(PREPROCESS_SCOPE):
            total[node.op_type] = total.get(node.op_type, 0) + 1
            inputs = node.input[1:2] if node.op_type == "Conv" else node.input
            if any(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in inputs):
                quantized[node.op_type] = quantized.get(node.op_type, 0) + 1
    return {"quantized": quantized, "total": total}
