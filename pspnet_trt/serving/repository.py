"""Triton model repositories from pspnet-trt artifacts: ``config.pbtxt``, the model file, labels, a README.

Every number in a config comes from the artifact: the tensor names, dtypes and dims of an ONNX are
read from its graph, those of an engine from its manifest (``NAME.engine.json``), and the class names,
sizes and normalisation from the :class:`~pspnet_trt.deploy.DeployInfo` both carry. The DeployInfo is
also stored in the config (``parameters { key: "pspnet_trt" ... }``) so that a client
(:class:`~pspnet_trt.serving.TritonSegmenter`) can preprocess and post-process as ``Segmenter`` does.

Three kinds of model:

* ``tensorrt_plan`` (an engine) and ``onnxruntime_onnx`` (an ONNX): the artifact itself, its own inputs
  and outputs. Servers with those backends (NVIDIA's containers) run them; the bundled CPU server here
  has neither.
* ``python``: ``model.py`` (:mod:`pspnet_trt.serving.triton_model`) runs the artifact through
  ``Segmenter`` (ONNX Runtime on the CPU, or TensorRT on the instance's GPU). Its interface is the same
  for every artifact: ``frames`` UINT8 [H, W, 3] (BGR) in, ``labels`` UINT8 [H, W] out, with a batch
  dimension in front when batching is on. For a raw-frame artifact (uint8 NxHxWx3 input) H, W are the
  artifact's frame size; for a normalised-input artifact any frame size is accepted (-1) and
  ``Segmenter`` resizes and normalises, and returns labels at the frame's size.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ..deploy import METADATA_KEY, DeployInfo, read_onnx_info
from ..errors import UserError
from ..files import atomic_dir

log = logging.getLogger(__name__)

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
BACKENDS = ("auto", "python")
PYTHON_IO = ("frames", "artifact")
FRAMES_INPUT = "frames"
LABELS_OUTPUT = "labels"
DEFAULT_MAX_BATCH = 8

# numpy dtype name -> Triton config data_type / protocol datatype
TRITON_DTYPES = {
    "uint8": "UINT8", "int8": "INT8", "int32": "INT32", "int64": "INT64", "float16": "FP16", "float32": "FP32",
    "bool": "BOOL",
}
# ONNX TensorProto elem_type -> numpy dtype name
ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16"}
ORT_DTYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(int32)": "int32",
              "tensor(int64)": "int64", "tensor(bool)": "bool", "tensor(float16)": "float16"}


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # numpy name
    shape: Tuple[int, ...]  # full shape, batch first; -1 = dynamic

    @property
    def triton_dtype(self) -> str:
        try:
            return TRITON_DTYPES[self.dtype]
        except KeyError:
            raise UserError(f"tensor {self.name!r} has dtype {self.dtype}, which has no Triton type here") from None


@dataclass(frozen=True)
class ArtifactIO:
    """What a config needs to know about one artifact."""

    path: Path
    kind: str  # "onnx" | "engine"
    info: DeployInfo
    inputs: Tuple[Tensor, ...]
    outputs: Tuple[Tensor, ...]
    max_profile_batch: Optional[int] = None  # engines: the largest batch of the optimisation profile

    @property
    def input(self) -> Tensor:
        return self.inputs[0]

    @property
    def dynamic_batch(self) -> bool:
        return self.input.shape[0] == -1

    @property
    def raw_frames(self) -> bool:
        """uint8 NxHxWx3 input: the artifact takes camera frames as they are (preprocessing in the graph)."""
        i = self.input
        return i.dtype == "uint8" and len(i.shape) == 4 and i.shape[3] == 3

    @property
    def frame_size(self) -> Optional[Tuple[int, int]]:
        return (self.input.shape[1], self.input.shape[2]) if self.raw_frames else None


def _onnx_tensors(path: Path) -> Tuple[Tuple[Tensor, ...], Tuple[Tensor, ...]]:
    """Graph inputs/outputs of an ONNX (onnx if installed, else onnxruntime)."""
    import importlib.util

    if importlib.util.find_spec("onnx") is not None:
        import onnx

        try:
            model = onnx.load_model(str(path), load_external_data=False)
        except Exception as e:  # onnx raises DecodeError and friends
            raise UserError(f"{path}: not a readable ONNX file ({type(e).__name__}: {e}); re-export it") from None
        inits = {i.name for i in model.graph.initializer}

        def conv(v: Any) -> Tensor:
            t = v.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
            return Tensor(v.name, ONNX_DTYPES.get(t.elem_type, f"onnx:{t.elem_type}"), dims)

        return (tuple(conv(v) for v in model.graph.input if v.name not in inits),
                tuple(conv(v) for v in model.graph.output))
    from ..deps import require

    ort = require("onnxruntime", "reading the inputs and outputs of an ONNX")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def conv_ort(v: Any) -> Tensor:
        return Tensor(v.name, ORT_DTYPES.get(v.type, v.type), tuple(d if isinstance(d, int) else -1 for d in v.shape))

    return tuple(conv_ort(v) for v in sess.get_inputs()), tuple(conv_ort(v) for v in sess.get_outputs())


def expected_output_shape(name: str, inp: Tensor, info: DeployInfo) -> Optional[Tuple[int, ...]]:
    """What the metadata says an output's shape is: labels at the frame (raw-frame input) or input size."""
    raw = inp.dtype == "uint8" and len(inp.shape) == 4 and inp.shape[3] == 3
    batch = inp.shape[0]
    if name == "labels":
        return (batch, *(inp.shape[1:3] if raw else info.input_size))
    if name == "logits":
        return (batch, info.num_classes, *info.input_size)
    return None


def _complete(t: Tensor, expected: Optional[Tuple[int, ...]]) -> Tensor:
    """Fill the dims a graph leaves symbolic (ArgMax/Resize outputs after slimming) from the metadata."""
    if expected is None or len(expected) != len(t.shape):
        return t
    return Tensor(t.name, t.dtype, tuple(e if d == -1 else d for d, e in zip(t.shape, expected)))


def _engine_tensors(path: Path, manifest: Any) -> Tuple[Tuple[Tensor, ...], Tuple[Tensor, ...]]:
    """Engine I/O from its manifest: names and the input shape are recorded; dtypes follow from the graph kind."""
    info: DeployInfo = manifest.info
    shape = tuple(int(d) for d in manifest.input_shape)
    if len(shape) != 4:
        raise UserError(f"{path}: the manifest's input_shape {list(shape)} is not 4-D; rebuild the engine")
    recorded = dict(manifest.build_flags.get("io_dtypes") or {})  # newer manifests may record dtypes
    raw = shape[3] == 3 and shape[1] != 3  # NxHxWx3 frames
    in_dtype = recorded.get(manifest.input_name, "uint8" if raw else "float32")
    inp = Tensor(manifest.input_name, in_dtype, shape)
    default_dtypes = {"labels": str(info.extra.get("labels_dtype", "uint8")), "logits": "float32"}
    outs = []
    for name in manifest.outputs:
        expected = expected_output_shape(name, inp, info)
        if expected is None:
            raise UserError(f"{path}: the manifest names an output {name!r} this version does not know; "
                            "rebuild the engine with this pspnet-trt")
        outs.append(Tensor(name, recorded.get(name, default_dtypes[name]), expected))
    return (inp,), tuple(outs)


def read_artifact(path: Union[str, Path]) -> ArtifactIO:
    """Inputs, outputs and DeployInfo of an ``.onnx`` or an engine (with its manifest)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file (expected an .onnx or an engine with its .json manifest)")
    if path.suffix == ".onnx":
        info = read_onnx_info(path)
        inputs, outputs = _onnx_tensors(path)
        if not inputs:
            raise UserError(f"{path}: the graph has no input")
        outputs = tuple(_complete(t, expected_output_shape(t.name, inputs[0], info)) for t in outputs)
        return ArtifactIO(path, "onnx", info, inputs, outputs)
    if path.suffix in ENGINE_SUFFIXES:
        from ..trt.manifest import read_manifest

        manifest = read_manifest(path)
        inputs, outputs = _engine_tensors(path, manifest)
        max_batch = int(manifest.build_flags.get("max_batch", 1)) if inputs[0].shape[0] == -1 else None
        return ArtifactIO(path, "engine", manifest.info, inputs, outputs, max_profile_batch=max_batch)
    raise UserError(f"{path}: unknown artifact type; expected .onnx or {'/'.join(ENGINE_SUFFIXES)}")


# -- config.pbtxt -------------------------------------------------------------------------------

@dataclass
class RepoOptions:
    name: Optional[str] = None  # model name (default: the artifact's file stem)
    max_batch: Optional[int] = None  # None: DEFAULT_MAX_BATCH where the model can batch; 0: no batching
    instances: int = 1
    max_queue_delay_us: int = 100
    backend: str = "auto"  # auto (tensorrt_plan / onnxruntime_onnx) | python
    dynamic_batching: bool = True
    device: str = "cpu"  # python backend over an ONNX: onnxruntime device (cpu | cuda)
    # python backend: "frames" (UINT8 frames in, labels out) or "artifact" (the artifact's own tensors, what a
    # tensorrt_plan / onnxruntime_onnx model takes: lets a client of those be tested on the CPU server)
    python_io: str = "frames"

    def __post_init__(self) -> None:
        if self.python_io not in PYTHON_IO:
            raise UserError(f"--python-io must be one of {PYTHON_IO}, got {self.python_io!r}")
        if self.backend not in BACKENDS:
            raise UserError(f"--backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.instances < 1:
            raise UserError(f"--instances must be >= 1, got {self.instances}")
        if self.max_batch is not None and self.max_batch < 0:
            raise UserError(f"--max-batch must be >= 0, got {self.max_batch}")
        if self.max_queue_delay_us < 0:
            raise UserError(f"--max-queue-delay-us must be >= 0, got {self.max_queue_delay_us}")


@dataclass
class ModelConfig:
    """The parts of Triton's ModelConfig we write (rendered by :meth:`to_pbtxt`)."""

    name: str
    platform: Optional[str]  # tensorrt_plan | onnxruntime_onnx
    backend: Optional[str]  # python
    max_batch_size: int
    inputs: List[Tuple[str, str, Tuple[int, ...]]]  # name, TYPE_x, dims (without the batch dim when batching)
    outputs: List[Tuple[str, str, Tuple[int, ...]]]
    instance_kind: str
    instances: int
    dynamic_batching: bool
    max_queue_delay_us: int
    default_model_filename: Optional[str] = None
    parameters: Dict[str, str] = field(default_factory=dict)

    def to_pbtxt(self) -> str:
        q = json.dumps  # a JSON string literal is a valid protobuf text string literal
        lines = [f"name: {q(self.name)}"]
        if self.platform:
            lines.append(f"platform: {q(self.platform)}")
        if self.backend:
            lines.append(f"backend: {q(self.backend)}")
        if self.default_model_filename:
            lines.append(f"default_model_filename: {q(self.default_model_filename)}")
        lines.append(f"max_batch_size: {self.max_batch_size}")
        for key, tensors in (("input", self.inputs), ("output", self.outputs)):
            lines.append(f"{key} [")
            body = [f"  {{ name: {q(n)} data_type: TYPE_{t} dims: [ {', '.join(str(d) for d in dims)} ] }}"
                    for n, t, dims in tensors]
            lines.append(",\n".join(body))
            lines.append("]")
        lines.append(f"instance_group [ {{ kind: {self.instance_kind} count: {self.instances} }} ]")
        if self.dynamic_batching and self.max_batch_size > 0:
            lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {self.max_queue_delay_us} }}")
        for key, value in self.parameters.items():
            lines.append(f"parameters {{ key: {q(key)} value: {{ string_value: {q(value)} }} }}")
        return "\n".join(lines) + "\n"


def _dims(t: Tensor, batching: bool) -> Tuple[int, ...]:
    return t.shape[1:] if batching else t.shape


def _max_batch(art: ArtifactIO, opts: RepoOptions, python: bool) -> int:
    """Triton's max_batch_size: > 0 only where the model can take a batch dimension of that size."""
    if opts.max_batch == 0:
        return 0
    if python:  # model.py stacks requests into one predict_batch; Segmenter chunks to the artifact's batch
        return opts.max_batch or DEFAULT_MAX_BATCH
    if not art.dynamic_batch:  # a static batch of B: Triton sends exactly the declared shape
        return 0
    limit = art.max_profile_batch  # engines: the profile's largest batch
    wanted = opts.max_batch or (limit or DEFAULT_MAX_BATCH)
    if limit is not None and wanted > limit:
        raise UserError(f"{art.path}: --max-batch {wanted} exceeds the engine's optimisation profile (max batch "
                        f"{limit}); rebuild it with `pspnet-trt build --max-batch {wanted}` or pass --max-batch {limit}")
    return wanted


def model_config(art: ArtifactIO, opts: RepoOptions, name: str) -> ModelConfig:
    python = opts.backend == "python"
    frames = python and opts.python_io == "frames"
    mbs = _max_batch(art, opts, frames)
    batching = mbs > 0
    params = {METADATA_KEY: art.info.to_json()}
    kind = "KIND_GPU" if art.kind == "engine" or opts.device.startswith("cuda") else "KIND_CPU"
    if python:
        params["artifact"] = _model_filename(art)
        params["device"] = "cuda" if art.kind == "engine" else opts.device
        params["io"] = opts.python_io
    if frames:
        frame: Tuple[int, ...] = art.frame_size or (-1, -1)
        inputs = [(FRAMES_INPUT, "UINT8", (*frame, 3) if batching else (1, *frame, 3))]
        outputs = [(LABELS_OUTPUT, "UINT8", tuple(frame) if batching else (1, *frame))]
        return ModelConfig(name, None, "python", mbs, inputs, outputs, kind, opts.instances, opts.dynamic_batching,
                           opts.max_queue_delay_us, parameters=params)
    ins = [(t.name, t.triton_dtype, _dims(t, batching)) for t in art.inputs]
    outs = [(t.name, t.triton_dtype, _dims(t, batching)) for t in art.outputs]
    if python:
        return ModelConfig(name, None, "python", mbs, ins, outs, kind, opts.instances, opts.dynamic_batching,
                           opts.max_queue_delay_us, parameters=params)
    if art.kind == "engine":
        return ModelConfig(name, "tensorrt_plan", None, mbs, ins, outs, "KIND_GPU", opts.instances,
                           opts.dynamic_batching, opts.max_queue_delay_us, _model_filename(art), params)
    return ModelConfig(name, "onnxruntime_onnx", None, mbs, ins, outs, "KIND_AUTO", opts.instances,
                       opts.dynamic_batching, opts.max_queue_delay_us, _model_filename(art), params)


def _model_filename(art: ArtifactIO) -> str:
    return "model.plan" if art.kind == "engine" else "model.onnx"


# -- the repository on disk ----------------------------------------------------------------------

def _model_name(path: Path, opts: RepoOptions) -> str:
    return opts.name or path.stem.replace(".", "_")


def write_model(artifact: Union[str, Path], out: Union[str, Path], opts: Optional[RepoOptions] = None) -> Path:
    """One model directory ``out/NAME`` (config.pbtxt, 1/model.*, labels.txt, README.md). Returns it.

    The directory is built beside its place and swapped in whole: an existing ``out/NAME`` is replaced (no file
    of an earlier model stays behind for Triton to load), and a failure leaves it as it was."""
    opts = opts or RepoOptions()
    art = read_artifact(artifact)
    name = _model_name(art.path, opts)
    cfg = model_config(art, opts, name)
    model_dir = Path(out) / name
    if model_dir.exists():
        log.info("replacing %s", model_dir)
    with atomic_dir(model_dir) as tmp:
        version = tmp / "1"
        version.mkdir()
        target = version / _model_filename(art)
        shutil.copyfile(art.path, target)
        if art.kind == "engine":
            from ..trt.manifest import manifest_path

            shutil.copyfile(manifest_path(art.path), manifest_path(target))
        if opts.backend == "python":
            shutil.copyfile(Path(__file__).with_name("triton_model.py"), version / "model.py")
        (tmp / "labels.txt").write_text("".join(f"{n}\n" for n in art.info.class_names))
        (tmp / "README.md").write_text(model_readme(art, cfg))
        (tmp / "config.pbtxt").write_text(cfg.to_pbtxt())
    log.info("wrote %s (%s, max_batch_size %d)", model_dir, cfg.platform or cfg.backend, cfg.max_batch_size)
    return model_dir


def write_repository(artifacts: Sequence[Union[str, Path]], out: Union[str, Path],
                     opts: Optional[RepoOptions] = None) -> List[Path]:
    """A Triton model repository with one model per artifact."""
    opts = opts or RepoOptions()
    if not artifacts:
        raise UserError("give at least one artifact (.onnx or engine)")
    if opts.name and len(artifacts) > 1:
        raise UserError("--name names one model; with several artifacts each model is named after its file")
    names: Dict[str, Path] = {}
    for a in artifacts:
        name = _model_name(Path(a), opts)
        if name in names:
            raise UserError(f"{names[name]} and {a} would both be model {name!r} (named after the file): rename one, "
                            "or write them with separate `--name`s")
        names[name] = Path(a)
    return [write_model(a, out, opts) for a in artifacts]


def model_readme(art: ArtifactIO, cfg: ModelConfig) -> str:
    i = art.info
    kind = cfg.platform or f"{cfg.backend} backend (runs {art.path.name} through pspnet_trt.Segmenter)"
    batch = (f"max_batch_size {cfg.max_batch_size}" + (", dynamic batching" if cfg.dynamic_batching else "")
             if cfg.max_batch_size else "no batching (max_batch_size 0)")
    io = "\n".join(f"- {k} `{n}`: {t} [{', '.join(str(d) for d in dims)}]"
                   for k, tensors in (("input", cfg.inputs), ("output", cfg.outputs)) for n, t, dims in tensors)
    first = cfg.inputs[0]
    if first[1] == "UINT8":
        call = ("frame = cv2.imread('street.png')  # BGR uint8 HxWx3\n"
                "labels = seg.predict(frame)       # uint8 HxW, classes in labels.txt")
    else:
        call = ("frame = cv2.imread('street.png')  # BGR uint8; the client resizes and normalises as Segmenter does\n"
                "labels = seg.predict(frame)")
    return f"""# {cfg.name}

{i.model} ({i.precision}, input {i.input_size[0]}x{i.input_size[1]}, {i.num_classes} classes in `labels.txt`),
served as {kind}; {batch}; {cfg.instances} instance(s) {cfg.instance_kind}.
Written by `pspnet-trt triton` from `{art.path.name}`; the artifact's deploy metadata is in the config's
`parameters` (key `{METADATA_KEY}`).

{io}

Serve the repository (the bundled CPU server, `pip install 'pspnet-trt[serve]'`):

    pspnet-trt serve REPO --http-port 8000 --grpc-port 8001

Client (HTTP, or `grpc://127.0.0.1:8001`):

```python
import cv2
from pspnet_trt.serving import TritonSegmenter

seg = TritonSegmenter("http://127.0.0.1:8000", "{cfg.name}")
{call}
```
"""
