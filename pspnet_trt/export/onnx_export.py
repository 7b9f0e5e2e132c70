"""PSPNet -> ONNX for a static input size: exact fixed pools, folded BatchNorm, deploy head, metadata.

Composable steps (each callable alone): :func:`trace_onnx` -> :func:`simplify` -> :func:`to_fp16`
-> :func:`attach_metadata` -> :func:`verify_graph` -> :func:`save_onnx`; :func:`export_onnx` runs
them all and :func:`export_zoo` adds the model and its weights (:func:`pspnet_trt.models.create_model`).

We use the TorchScript-based exporter (``dynamo=False``): with the pools already lowered to
fixed ops it yields a small static graph (BatchNorm folded into the convs in eval mode), and it
needs no extra packages. The dynamo exporter would lower adaptive pooling to Gather/Where chains.
"""

from __future__ import annotations

import copy
import io
import logging
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, Optional, Tuple, Union

from ..artifacts import attach_metadata, check_out, save_onnx
from ..deploy import FLOAT_PRECISIONS, PREPROCESS_SCOPE, DeployInfo
from ..deps import require
from ..errors import UserError
from ..sizes import check_size

if TYPE_CHECKING:
    import onnx
    from torch import nn

log = logging.getLogger(__name__)

OPSET = 17
# Ops that must never appear: they mean a shape-driven or adaptive lowering slipped in.
FORBIDDEN_OPS = {"Gather", "GatherND", "GatherElements", "Where", "NonZero", "Loop", "If", "BatchNormalization"}
# Kept in FP32 in the FP16 graph. ArgMax runs on the FP32 logits so ties break as in FP32 and
# the label output needs no extra cast; see benchmarks/export_parity.py for the agreement figures.
FP16_KEEP_FP32_OPS = ("ArgMax",)
LABEL_DTYPES = ("uint8", "int32")
# Kept FP32 in the FP16 graph: a raw-frame graph's preprocessing (a uint8 frame, OpenCV's integer resize and
# (x - mean) / std are cheap and exact in FP32) and the nearest upsample of its label map (ints in a float Resize).
KEEP_FP32_SCOPES = (PREPROCESS_SCOPE, "/label_upsample/")
# bgr8 graphs: ArgMax at the input size, then nearest to the frame size; chosen by benchmarks/frame_upsample.py
# (see the README, "Raw-frame artifacts").
DEFAULT_FRAME_UPSAMPLE = "labels"


def trace_onnx(model: nn.Module, info: DeployInfo, opset: int = OPSET, labels_dtype: str = "uint8") -> onnx.ModelProto:
    """Trace the deploy variant of ``model`` (see :class:`DeployPSPNet`) to an in-memory ONNX model."""
    torch = require("torch", "ONNX export")
    onnx = require("onnx", "ONNX export")
    from .deploy_model import DeployPSPNet

    if labels_dtype not in LABEL_DTYPES:
        raise UserError(f"labels dtype must be one of {LABEL_DTYPES}, got {labels_dtype!r}")
    deploy = DeployPSPNet(model, info.input_size, info.output, getattr(torch, labels_dtype),
                          input_format=info.input_format, norm=info.normalization, frame_hw=info.frame_size,
                          frame_upsample=info.frame_upsample).eval()
    dummy = torch.zeros(info.input_shape(info.batch or 1), dtype=getattr(torch, info.input_dtype))
    dynamic_axes = None
    if info.batch is None:
        dynamic_axes = {name: {0: "batch"} for name in (info.input_name, *info.output_names)}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        torch.onnx.export(
            deploy, (dummy,), buffer, dynamo=False, opset_version=opset, input_names=[info.input_name],
            output_names=list(info.output_names), dynamic_axes=dynamic_axes, do_constant_folding=True,
        )
    return drop_cast_round_trips(onnx.load_from_string(buffer.getvalue()))


def drop_cast_round_trips(model: onnx.ModelProto) -> onnx.ModelProto:
    """torch traces an integer ``div(..., rounding_mode="trunc")`` as Div -> Cast(INT64) -> Cast(back to the
    Div's type). Drop such pairs where they are lossless (an 8/16/32-bit integer widened to INT64 and narrowed back:
    the in-graph resize's int32 arithmetic), so no INT64 reaches TensorRT; a float -> INT64 -> float pair (a
    truncation) stays."""
    onnx = require("onnx", "ONNX export")
    lossless = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT16, onnx.TensorProto.UINT16,
                onnx.TensorProto.INT32, onnx.TensorProto.UINT32}
    inferred = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.value_info, *inferred.input, *inferred.output)}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    consumers: Dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in model.graph.output}

    def to(node: Any) -> Optional[int]:
        return next((x.i for x in node.attribute if x.name == "to"), None) if node.op_type == "Cast" else None

    rename: Dict[str, str] = {}
    dropped: set = set()
    for a in model.graph.node:
        users = consumers.get(a.output[0], [])
        if to(a) != onnx.TensorProto.INT64 or a.output[0] in graph_outputs or len(users) != 1:
            continue
        b = users[0]
        if types.get(a.input[0]) in lossless and to(b) == types[a.input[0]] and b.output[0] not in graph_outputs:
            rename[b.output[0]] = a.input[0]
            dropped.update((id(a), id(b)))
    if not dropped:
        return model
    kept = [n for n in model.graph.node if id(n) not in dropped]
    for node in kept:
        for i, name in enumerate(node.input):
            while name in rename:  # chained pairs
                name = rename[name]
            node.input[i] = name
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return model


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxslim: constant folding, dead-node removal, shape inference."""
    onnxslim = require("onnxslim", "ONNX simplification")
    return onnxslim.slim(model)


def to_fp16(model: onnx.ModelProto, keep_fp32_ops: Iterable[str] = FP16_KEEP_FP32_OPS,
            keep_fp32_scopes: Tuple[str, ...] = KEEP_FP32_SCOPES) -> onnx.ModelProto:
    """FP16 graph with FP32 inputs/outputs (TensorRT 11 takes precision from the graph, not from flags).

    onnxconverter-common's converter: weights and activations FP16, casts at the graph boundary and
    around ``keep_fp32_ops`` and the nodes named ``keep_fp32_scopes*`` (a raw-frame graph's preprocessing,
    so the frame is resized and normalised in FP32 and cast to FP16 once, at the network; and its label upsample). TensorRT builds it strongly typed; ONNX Runtime on the CPU runs it
    with the same FP16 rounding of weights and activations, which predicts the engine's agreement.
    """
    require("onnxconverter_common", "FP16 conversion")
    from onnxconverter_common import float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keep_nodes = [n.name for n in model.graph.node if n.name.startswith(keep_fp32_scopes)]
        if keep_nodes:  # the converter leaves a kept node's stale FP32 value_info on its new FP16 cast output
            model = copy.deepcopy(model)
            del model.graph.value_info[:]
        return float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=list(keep_fp32_ops),
                                                node_block_list=keep_nodes)


def verify_graph(model: onnx.ModelProto) -> None:
    """onnx.checker plus our own rules: no adaptive/shape-driven pooling, BatchNorm folded."""
    onnx = require("onnx", "ONNX export")
    onnx.checker.check_model(model, full_check=True)
    ops = {node.op_type for node in model.graph.node}
    bad = ops & FORBIDDEN_OPS
    if bad or any("Adaptive" in op for op in ops):
        raise RuntimeError(f"exported graph contains ops that must not be there: {sorted(bad)} (all ops: {sorted(ops)})")


def check_batch(batch: Optional[int]) -> None:
    """A static batch must be a positive integer (None: dynamic)."""
    if batch is not None and batch < 1:
        raise UserError(f"--batch must be a positive number of images, got {batch}: pass --batch 1 (or N >= 1), or "
                        "--dynamic-batch for a batch chosen at run time")


def export_onnx(model: nn.Module, info: DeployInfo, out: Union[str, Path], precision: Optional[str] = None,
                opset: int = OPSET, labels_dtype: str = "uint8", slim: bool = True) -> Path:
    """Export ``model`` (an eval PSPNet) for ``info.input_size``/``info.output``/``info.batch`` to ``out``.

    ``precision`` (``fp32`` or ``fp16``) overrides ``info.precision``. Returns ``out``.
    """
    check_batch(info.batch)
    precision = precision or info.precision
    if precision not in FLOAT_PRECISIONS:
        raise UserError(f"export writes fp32 or fp16 graphs, got {precision!r} (INT8: `pspnet-trt quantize`)")
    extra = {**info.extra, "labels_dtype": labels_dtype, "opset": opset}
    if info.input_format == "pixels" and info.output != "labels":
        extra["scores"] = "softmax"  # the "logits" output holds class probabilities (for DeepStream's parser)
    info = info.with_(precision=precision, extra=extra)
    start = time.perf_counter()
    graph = trace_onnx(model, info, opset=opset, labels_dtype=labels_dtype)
    if slim:
        graph = simplify(graph)
    if precision == "fp16":
        graph = to_fp16(graph)
    attach_metadata(graph, info)
    verify_graph(graph)
    save_onnx(graph, out)
    log.info("exported %s (%s, %dx%d, %s) in %.1f s", out, precision, *info.input_size, info.output,
             time.perf_counter() - start)
    return Path(out)


def export_zoo(name: str, out: Union[str, Path], checkpoint: Optional[Union[str, Path]] = None,
               input_size: Optional[Tuple[int, int]] = None, output: str = "labels", precision: str = "fp32",
               batch: Optional[int] = 1, num_classes: Optional[int] = None, labels_dtype: str = "uint8",
               random_seed: int = 0, input_format: str = "normalized", frame_size: Optional[Tuple[int, int]] = None,
               frame_upsample: str = DEFAULT_FRAME_UPSAMPLE, random_weights: bool = False) -> Path:
    """Build zoo model ``name`` through :func:`pspnet_trt.models.create_model` and export it.

    Weights: ``checkpoint``, else the shipped one, else the published one (downloaded); random (``random_seed``)
    only with ``random_weights=True``, and then the artifact says so: its ``checkpoint_sha256`` is None and its
    ``extra["random_seed"]`` the seed. ``input_format``/``frame_size``/``frame_upsample``: see
    :func:`raw_frame_options`."""
    require("torch", "ONNX export")
    from ..models import create_model
    from ..zoo import get_spec

    check_batch(batch)
    if num_classes is not None and num_classes < 1:
        raise UserError(f"--num-classes {num_classes}: a model has at least 1 class; pass the checkpoint's class count")
    if input_size is not None:
        check_size(input_size, "--input-size")
    spec = get_spec(name)
    check_out(out, "onnx", inputs=[checkpoint])  # never over the checkpoint it reads
    fmt = raw_frame_options(input_format, frame_size, frame_upsample, output)  # bad flags fail before any download
    model = create_model(name, checkpoint, random_weights=random_weights, seed=random_seed, num_classes=num_classes)
    extra: Dict[str, Any] = {}
    if model.weights.random:
        extra["random_seed"] = random_seed
        log.warning("%s: RANDOM weights (seed %d), as asked with --random-weights: the artifact predicts nothing "
                    "useful, and its metadata says so", name, random_seed)
    info = DeployInfo.from_spec(spec, input_size=input_size, num_classes=num_classes, classes=model.weights.classes,
                                output=output, batch=batch, precision=precision, checkpoint_sha256=model.weights.sha256,
                                extra=extra, **fmt)
    return export_onnx(model, info, out, labels_dtype=labels_dtype)


def raw_frame_options(input_format: str = "normalized", frame_size: Optional[Tuple[int, int]] = None,
                      frame_upsample: str = DEFAULT_FRAME_UPSAMPLE, output: str = "labels") -> Dict[str, Any]:
    """DeployInfo fields of an export's input format, or a UserError naming the flag to fix.

    ``bgr8`` needs ``frame_size`` (H, W) and outputs labels at that size; ``pixels`` (DeepStream) and
    ``normalized`` take no frame size."""
    from ..deploy import FRAME_UPSAMPLES, INPUT_FORMATS

    if input_format not in INPUT_FORMATS:
        raise UserError(f"--input-format must be one of {INPUT_FORMATS}, got {input_format!r}")
    if frame_upsample not in FRAME_UPSAMPLES:
        raise UserError(f"--frame-upsample must be one of {FRAME_UPSAMPLES}, got {frame_upsample!r}")
    if input_format == "bgr8":
        if frame_size is None:
            raise UserError("--input-format bgr8 needs --frame-size HxW (the camera frame size, e.g. 1024x2048)")
        if output != "labels":
            raise UserError(f"--input-format bgr8 writes labels at the frame size: drop --output {output}")
        return {"input_format": input_format, "frame_size": check_size(frame_size, "--frame-size"),
                "frame_upsample": frame_upsample}
    if frame_size is not None:
        raise UserError(f"--frame-size is for --input-format bgr8 (got --input-format {input_format})")
    return {"input_format": input_format}


def zoo_model(name: str, checkpoint: Optional[Union[str, Path]] = None, num_classes: Optional[int] = None,
              random_seed: int = 0, random_weights: bool = False) -> nn.Module:
    """:func:`pspnet_trt.models.create_model` under its export name: ``checkpoint``, else the shipped or the
    published one; random weights (``random_seed``) only with ``random_weights=True``."""
    require("torch", "building models")
    from ..models import create_model

    return create_model(name, checkpoint, random_weights=random_weights, seed=random_seed, num_classes=num_classes)


def graph_summary(model: onnx.ModelProto) -> Any:
    """Op-type histogram of a graph (for reports and tests)."""
    from collections import Counter

    return Counter(node.op_type for node in model.graph.node)
