"""ONNX Runtime backend: runs an exported ``.onnx`` (FP32, FP16 or Q/DQ INT8) with numpy in and out.

Everything it needs to preprocess (input size, normalisation, output kind, classes) is read from
the file's metadata; nothing is re-typed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np

from ..artifacts import check_file, read_onnx_info
from ..deploy import DeployInfo
from ..deps import require
from ..errors import UserError
from .backend import Backend, as_uint8_labels
from .device import parse_device, resolve_device

log = logging.getLogger(__name__)


CUDA_EP = "CUDAExecutionProvider"
GET_CUDA = ("get one with `pip uninstall onnxruntime && pip install onnxruntime-gpu` (`onnxruntime-gpu[cuda,cudnn]` "
            "also installs the CUDA and cuDNN libraries it loads), or run with --device cpu")


def _providers(ort: Any, device: str) -> List[Any]:
    """Execution providers for ``device`` (auto: CUDA where this onnxruntime has it, i.e. onnxruntime-gpu)."""
    available = ort.get_available_providers()
    dev = resolve_device(device, lambda: CUDA_EP in available)
    if dev.is_cuda:
        if CUDA_EP not in available:
            raise UserError(f"device {device!r} asked for, but this onnxruntime ({getattr(ort, '__version__', '?')}) "
                            f"has no CUDA provider (it has {', '.join(available)}): {GET_CUDA}")
        return [(CUDA_EP, {"device_id": dev.index}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _cuda_did_not_load(ort: Any, path: Path, device: str, detail: str) -> UserError:
    return UserError(f"{path}: device {device!r} asked for, but this onnxruntime ({getattr(ort, '__version__', '?')}) "
                     f"could not load its CUDA provider ({detail}): the CUDA and cuDNN libraries it loads are missing or of another "
                     "version; `pip install 'onnxruntime-gpu[cuda,cudnn]'` installs matching ones (with no "
                     "onnxruntime beside it: `pip uninstall onnxruntime`), or run with --device cpu")


FAKE_QUANT = ("INT8 as fake-quantization (Q/DQ in float, ONNX Runtime graph optimizations off): "
              "the same figure on every CPU, as TensorRT computes it")


def fake_quant_for(info: Optional[DeployInfo]) -> bool:
    """True for an INT8 Q/DQ graph meant for TensorRT (``quantize --target tensorrt``, the default)."""
    q = (info.extra.get("quantization") or {}) if info is not None else {}
    return info is not None and info.precision == "int8" and q.get("target", "tensorrt") == "tensorrt"


def session_options_for(info: Optional[DeployInfo], threads: Optional[int] = None,
                        fake_quant: Optional[bool] = None) -> Any:
    """ONNX Runtime session options for the artifact described by ``info``.

    ``fake_quant`` (None: :func:`fake_quant_for`): run the graph exactly as written
    (``ORT_DISABLE_ALL``): QuantizeLinear/DequantizeLinear as float rounding and scaling, Conv in
    float on the dequantized tensors. That predicts TensorRT's INT8 (exact INT32 sums) and does not
    depend on the CPU. Any optimization level changes the numerics: ``ORT_ENABLE_BASIC`` already
    quantizes Conv biases to INT32 and moves Q/DQ pairs; higher levels use NCHWc float kernels whose
    blocking depends on the CPU and, where a Conv's output is quantized (``--target cpu``), integer
    kernels (``QLinearConv``: VNNI, or ``vpmaddubsw`` that can saturate). Measured in
    ``benchmarks/int8_cpu.py``. Without fake-quant: ONNX Runtime's fastest kernels.
    """
    ort = require("onnxruntime", "running ONNX files")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if fake_quant_for(info) if fake_quant is None else fake_quant:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


def int8_numerics(info: DeployInfo, options: Any, ort: Any) -> Optional[str]:
    """How an INT8 graph runs here, for reports; warns when a ``--target cpu`` graph was made for another
    CPU class (VNNI or not: see :mod:`pspnet_trt.cpu`). None for float graphs."""
    if info.precision != "int8":
        return None
    if options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL:
        return FAKE_QUANT
    from ..cpu import cpu_info, other_cpu_class

    here = cpu_info()
    warning = other_cpu_class(info.extra.get("quantization") or {}, here)
    if warning:
        log.warning("%s: %s", info.model, warning)
    return f"ONNX Runtime's optimized kernels of this CPU ({here.model}, {here.cpu_class})"


def _loads_on_cpu(ort: Any, path: Path, options: Any) -> bool:
    try:
        ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        return True
    except Exception:  # noqa: BLE001 - the file's own problem: the caller reports the first error
        return False


class OrtBackend(Backend):
    """``fake_quant``: see :func:`session_options_for`; ``numerics`` says how an INT8 graph was run (or None)."""

    name = "onnxruntime"

    def __init__(self, path: Union[str, Path], device: str = "auto", threads: Optional[int] = None,
                 fake_quant: Optional[bool] = None) -> None:
        ort = require("onnxruntime", "running ONNX files")
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"ONNX file {self.path} does not exist")
        try:
            peek: Optional[DeployInfo] = read_onnx_info(self.path)
        except Exception:  # unreadable metadata: ONNX Runtime's load below names the problem
            peek = None
        options = session_options_for(peek, threads, fake_quant)
        providers = _providers(ort, device)  # no CUDA provider: its own message, not a load failure
        cuda = providers[0] != "CPUExecutionProvider"
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
            check_file(self.path)  # truncated / not ONNX: say so
            if cuda and _loads_on_cpu(ort, self.path, options):  # the file is fine: CUDA is what failed
                raise _cuda_did_not_load(ort, self.path, device, f"{type(e).__name__}: {e}") from None
            raise UserError(f"{self.path}: ONNX Runtime cannot load it ({type(e).__name__}: {e}); re-export it") from None
        if cuda and CUDA_EP not in self.session.get_providers():  # onnxruntime fell back to the CPU on its own
            problem = _cuda_did_not_load(ort, self.path, device, f"it fell back to {self.session.get_providers()}")
            if parse_device(device) is not None:
                raise problem
            log.warning("%s; running on the CPU", problem)
        self.info = peek if peek is not None else read_onnx_info(self.path)  # the clear error on bad metadata
        self.numerics = int8_numerics(self.info, options, ort)
        self.output_names = [o.name for o in self.session.get_outputs()]
        log.debug("opened %s (%s) outputs %s", self.path, self.info.precision, self.output_names)

    def run(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        batch = self.check_batch(batch)
        values = self.session.run(self.output_names, {self.info.input_name: batch})
        out = dict(zip(self.output_names, values))
        if "labels" in out:
            out["labels"] = as_uint8_labels(out["labels"])
        if "logits" in out:
            out["logits"] = out["logits"].astype(np.float32, copy=False)
        return out

    def close(self) -> None:
        self.session = None

