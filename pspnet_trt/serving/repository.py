"""Triton model repositories from pspnet-trt artifacts: ``config.pbtxt``, the model file, labels, a README.

Every number in a config comes from the artifact, read through :mod:`pspnet_trt.artifacts`: the tensor
shapes (input format, frame size, batch), class names and the batch range from its
:class:`~pspnet_trt.deploy.DeployInfo` (ONNX metadata or engine manifest), the tensor names and dtypes from
the ONNX graph or the manifest (a graph dim that disagrees with the metadata is refused). The DeployInfo is
also stored in the config (``parameters { key: "pspnet_trt" ... }``) so that a client
(:class:`~pspnet_trt.serving.TritonSegmenter`) feeds the model exactly what ``Segmenter`` would.

Three kinds of model:

* ``tensorrt_plan`` (an engine) and ``onnxruntime_onnx`` (an ONNX): the artifact itself, its own inputs
  and outputs. Servers with those backends (NVIDIA's containers) run them; the bundled CPU server here
  has neither.
* ``python``: ``model.py`` (:mod:`pspnet_trt.serving.triton_model`) runs the artifact through
  ``Segmenter`` (ONNX Runtime on the CPU, or TensorRT on the instance's GPU). Its interface is the same
  for every artifact: ``frames`` UINT8 [H, W, 3] (BGR) in, ``labels`` UINT8 [H, W] out, with a batch
  dimension in front when batching is on. For a raw-frame (bgr8) artifact H, W are the artifact's frame
  size; for the others any frame size is accepted (-1) and ``Segmenter`` prepares the artifact's input,
  and returns labels at the frame's size. ``--python-io artifact`` serves the artifact's own tensors instead.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .. import artifacts
from ..deploy import METADATA_KEY, DeployInfo
from ..errors import UserError
from ..files import check_outputs, exclusive_lock, write_json
from ..runtime.device import parse_device
from .staging import JOURNAL, STAGING_SUFFIX, commit, lock_path, recover_repository

log = logging.getLogger(__name__)

BACKENDS = ("auto", "python")
PYTHON_IO = ("frames", "artifact")
FRAMES_INPUT = "frames"
LABELS_OUTPUT = "labels"
DEFAULT_MAX_BATCH = 8
# A model name is one folder of the repository: letters, digits, "_", "-", "." (not "." or "..")
MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]+")
# In every model folder this tool writes: what wrote it. Only such folders are ever replaced.
MARKER = "pspnet-trt.json"

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
    """What a config needs to know about one artifact: its DeployInfo and batch range (from
    :mod:`pspnet_trt.artifacts`), and the names and dtypes of its tensors, shaped by the DeployInfo."""

    path: Path
    kind: str  # "onnx" | "engine"
    info: DeployInfo
    inputs: Tuple[Tensor, ...]
    outputs: Tuple[Tensor, ...]
    batch_range: Tuple[int, Optional[int]] = (1, 1)  # artifacts.batch_range

    @property
    def input(self) -> Tensor:
        return self.inputs[0]

    @property
    def dynamic_batch(self) -> bool:
        return self.info.batch is None

    @property
    def raw_frames(self) -> bool:
        """uint8 NxHxWx3 input: the artifact takes camera frames as they are (preprocessing in the graph)."""
        return self.info.raw_frames

    @property
    def frame_size(self) -> Optional[Tuple[int, int]]:
        return self.info.frame_size


def expected_shape(name: str, info: DeployInfo) -> Optional[Tuple[int, ...]]:
    """A tensor's full shape as the DeployInfo describes it (batch -1 when dynamic); None for a name it does not
    describe."""
    batch = -1 if info.batch is None else info.batch
    if name == info.input_name:
        return info.input_shape(batch)
    if name == "labels":
        return (batch, *info.output_size)
    if name == "logits":
        return (batch, info.num_classes, *info.input_size)
    return None


def _shaped(path: Path, t: Tensor, info: DeployInfo, fix: str) -> Tensor:
    """``t`` with the shape the DeployInfo gives; a UserError where a dim the graph fixes disagrees with it."""
    want = expected_shape(t.name, info)
    if want is None:
        raise UserError(f"{path}: tensor {t.name!r} is not one the artifact's metadata describes; {fix}")
    if len(t.shape) != len(want) or any(d not in (-1, w) for d, w in zip(t.shape, want)):
        raise UserError(f"{path}: tensor {t.name!r} has shape {list(t.shape)}, its metadata says {list(want)}; {fix}")
    return Tensor(t.name, t.dtype, want)


def _onnx_tensors(path: Path) -> Tuple[Tuple[Tensor, ...], Tuple[Tensor, ...]]:
    """Graph inputs/outputs of an ONNX (onnx if installed, else onnxruntime): names, dtypes and the dims the
    graph fixes (-1 for symbolic ones)."""
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


def _engine_tensors(path: Path, manifest: artifacts.Manifest) -> Tuple[Tuple[Tensor, ...], Tuple[Tensor, ...]]:
    """Engine I/O from its manifest: the tensor names it records, dtypes from the DeployInfo (or the dtypes a newer
    manifest records), shapes from the DeployInfo (checked against the recorded input shape)."""
    info = manifest.info
    fix = "rebuild the engine with this pspnet-trt"
    recorded = dict(manifest.build_flags.get("io_dtypes") or {})
    default_dtypes = {info.input_name: info.input_dtype, "logits": "float32",
                      "labels": str(info.extra.get("labels_dtype", "uint8"))}
    inp = _shaped(path, Tensor(manifest.input_name, recorded.get(manifest.input_name, info.input_dtype),
                               tuple(int(d) for d in manifest.input_shape)), info, fix)
    outs = []
    for name in manifest.outputs:
        if name not in default_dtypes:
            raise UserError(f"{path}: the manifest names an output {name!r} this version does not know; {fix}")
        outs.append(Tensor(name, recorded.get(name, default_dtypes[name]), expected_shape(name, info) or ()))
    return (inp,), tuple(outs)


def read_artifact(path: Union[str, Path]) -> ArtifactIO:
    """Inputs, outputs, DeployInfo and batch range of an ``.onnx`` or an engine (with its manifest)."""
    path = Path(path)
    kind = artifacts.kind(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file (expected an .onnx or an engine with its .json manifest)")
    info = artifacts.read_info(path)
    if kind == "onnx":
        inputs, outputs = _onnx_tensors(path)
        if not inputs:
            raise UserError(f"{path}: the graph has no input")
        fix = "re-export it with this pspnet-trt"
        inputs = (_shaped(path, inputs[0], info, fix), *inputs[1:])
        outputs = tuple(_shaped(path, t, info, fix) for t in outputs)
    else:
        inputs, outputs = _engine_tensors(path, artifacts.read_manifest(path))
    return ArtifactIO(path, kind, info, inputs, outputs, artifacts.batch_range(path))


# -- config.pbtxt -------------------------------------------------------------------------------

def check_model_name(name: str) -> str:
    """``name`` if it is one plain folder name (what a Triton model name is), else a UserError."""
    if not MODEL_NAME.fullmatch(name) or name in (".", ".."):
        raise UserError(f"--name {name!r}: a model name is one folder name of letters, digits, '_', '-' and '.' "
                        "(not '.' or '..'), e.g. --name r18_camvid")
    return name


@dataclass
class RepoOptions:
    name: Optional[str] = None  # model name (default: the artifact's file stem); see check_model_name
    max_batch: Optional[int] = None  # None: follow the artifact's batch range; 0: no batching
    instances: int = 1
    max_queue_delay_us: int = 100
    backend: str = "auto"  # auto (tensorrt_plan / onnxruntime_onnx) | python
    dynamic_batching: bool = True
    # where an ONNX runs: auto (CUDA where onnxruntime-gpu is installed, else the CPU), cpu, cuda or cuda:N.
    # An engine always runs on its instance's GPU.
    device: str = "auto"
    # python backend: "frames" (UINT8 frames in, labels out) or "artifact" (the artifact's own tensors, what a
    # tensorrt_plan / onnxruntime_onnx model takes: lets a client of those be tested on the CPU server)
    python_io: str = "frames"

    def __post_init__(self) -> None:
        if self.name is not None:
            check_model_name(self.name)
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
        parse_device(self.device)


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


def _max_batch(art: ArtifactIO, opts: RepoOptions, frames: bool) -> int:
    """Triton's max_batch_size, from the artifact's batch range: > 0 only where every batch Triton may form runs.

    The artifact's own tensors: a static batch -> 0 (Triton sends the declared shape, batch dim included); a
    dynamic batch -> ``--max-batch``, else the engine profile's max, else DEFAULT_MAX_BATCH for an ONNX.
    The python ``frames`` model: model.py runs a batch through Segmenter, which chunks it to the artifact's batch
    rule, so any size runs; by default it follows the artifact (a static n -> n, a dynamic engine -> its max)."""
    if opts.max_batch == 0:
        return 0
    least, most = art.batch_range
    if frames:
        return opts.max_batch or most or DEFAULT_MAX_BATCH
    if least == most:
        return 0
    wanted = opts.max_batch or most or DEFAULT_MAX_BATCH
    if most is not None and wanted > most:
        raise UserError(f"{art.path}: --max-batch {wanted} exceeds the engine's optimisation profile (max batch "
                        f"{most}); rebuild it with `pspnet-trt build --max-batch {wanted}` or pass --max-batch {most}")
    return wanted


def _instance_kind(art: ArtifactIO, opts: RepoOptions) -> str:
    """An engine: its GPU. An ONNX: cpu -> KIND_CPU, cuda -> KIND_GPU; auto -> KIND_AUTO for onnxruntime_onnx
    (Triton's choice), KIND_CPU for the python model (its Segmenter resolves auto: CUDA 0 with onnxruntime-gpu)."""
    if art.kind == "engine":
        return "KIND_GPU"
    device = parse_device(opts.device)
    if device is None:
        return "KIND_CPU" if opts.backend == "python" else "KIND_AUTO"
    return "KIND_GPU" if device.is_cuda else "KIND_CPU"


def model_config(art: ArtifactIO, opts: RepoOptions, name: str) -> ModelConfig:
    python = opts.backend == "python"
    frames = python and opts.python_io == "frames"
    mbs = _max_batch(art, opts, frames)
    batching = mbs > 0
    params = {METADATA_KEY: art.info.to_json()}
    kind = _instance_kind(art, opts)
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
    platform = "tensorrt_plan" if art.kind == "engine" else "onnxruntime_onnx"
    return ModelConfig(name, platform, None, mbs, ins, outs, kind, opts.instances, opts.dynamic_batching,
                       opts.max_queue_delay_us, _model_filename(art), params)


def _model_filename(art: ArtifactIO) -> str:
    return "model.plan" if art.kind == "engine" else "model.onnx"


# -- the repository on disk ----------------------------------------------------------------------

def _model_name(path: Path, opts: RepoOptions) -> str:
    """``--name`` (checked), else the file's stem made a plain name (anything but letters, digits, _ and - -> _)."""
    if opts.name is not None:
        return check_model_name(opts.name)
    return re.sub(r"[^A-Za-z0-9_-]", "_", path.stem) or "model"


def _fill(tmp: Path, art: ArtifactIO, cfg: ModelConfig, opts: RepoOptions) -> None:
    """The files of one model dir, written into the new dir ``tmp``. The artifact's validation record (beside an
    ONNX; in an engine's manifest) goes with it, so Segmenter.open in the model sees the artifact's verdict."""
    version = tmp / "1"
    version.mkdir()
    target = version / _model_filename(art)
    shutil.copyfile(art.path, target)
    if art.kind == "engine":
        shutil.copyfile(artifacts.manifest_path(art.path), artifacts.manifest_path(target))
    elif artifacts.record_path(art.path).is_file():
        shutil.copyfile(artifacts.record_path(art.path), artifacts.record_path(target))
    if opts.backend == "python":
        shutil.copyfile(Path(__file__).with_name("triton_model.py"), version / "model.py")
    (tmp / "labels.txt").write_text("".join(f"{n}\n" for n in art.info.class_names))
    (tmp / "README.md").write_text(model_readme(art, cfg))
    (tmp / "config.pbtxt").write_text(cfg.to_pbtxt())
    from ..version import __version__

    (tmp / MARKER).write_text(json.dumps({"written_by": f"pspnet-trt {__version__} triton", "model": cfg.name,
                                          "artifact": art.path.name}, indent=2) + "\n")


def write_model(artifact: Union[str, Path], out: Union[str, Path], opts: Optional[RepoOptions] = None) -> Path:
    """One model directory ``out/NAME`` (config.pbtxt, 1/model.*, labels.txt, README.md). Returns it.
    See :func:`write_repository`."""
    return write_repository([artifact], out, opts)[0]


def write_repository(artifacts_: Sequence[Union[str, Path]], out: Union[str, Path],
                     opts: Optional[RepoOptions] = None) -> List[Path]:
    """A Triton model repository with one model dir ``out/NAME`` per artifact. Returns the dirs.

    All or none: every artifact is read and its config made before anything is written; the dirs are then built
    in a staging folder beside the repository (``.REPO.<hex>.triton-staging``, outside the model namespace Triton
    reads), and once all are complete a journal in it says they go in; each is then moved in whole (an existing
    ``out/NAME`` is replaced, with no file of the earlier model left for Triton to load). An error or a kill before
    the journal leaves every dir as it was; a kill after it is completed by the next ``triton`` or ``serve`` of the
    repository (:func:`recover_repository`). Only model dirs this tool wrote (:data:`MARKER`) are replaced: any
    other ``out/NAME`` (a folder of the user's, a file) is refused, naming it. Writers of one repository take turns
    (a lock beside it). A model name is one plain folder name, so nothing outside ``out/NAME`` is ever touched."""
    opts = opts or RepoOptions()
    if not artifacts_:
        raise UserError("give at least one artifact (.onnx or engine)")
    if opts.name and len(artifacts_) > 1:
        raise UserError("--name names one model; with several artifacts each model is named after its file")
    out = Path(out)
    names: Dict[str, Path] = {}
    for a in artifacts_:
        name = _model_name(Path(a), opts)
        if name in names:
            raise UserError(f"{names[name]} and {a} would both be model {name!r} (named after the file): rename one, "
                            "or write them with separate `--name`s")
        names[name] = Path(a)
    plans = []
    for name, path in names.items():
        art = read_artifact(path)
        plans.append((art, model_config(art, opts, name)))
    dirs = [out / cfg.name for _, cfg in plans]
    assert all(d.parent == out for d in dirs)  # one plain name: the dir is the repository's own child
    sources = [p for art, _ in plans for p in (art.path, artifacts.record_path(art.path))]
    # an artifact inside a model dir it replaces is fine (copied before the swap), the artifact file itself is not
    check_outputs(dirs, sources, fix="pass another --name")
    for d in dirs:
        check_replaceable(d)
    out.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(lock_path(out), busy=f"another `pspnet-trt triton` writes {out}; wait for it to end"):
        recover_repository(out, locked=True)
        for d in dirs:
            check_replaceable(d)  # again, under the lock
        staging = out.parent / f".{out.name}.{secrets.token_hex(6)}{STAGING_SUFFIX}"
        (staging / "new").mkdir(parents=True)
        try:
            for art, cfg in plans:
                _fill_synced(staging / "new" / cfg.name, art, cfg, opts)
            for d in dirs:
                if d.exists():
                    log.info("replacing %s (written by pspnet-trt triton)", d)
            write_json(staging / JOURNAL, {"models": [d.name for d in dirs]})  # from here on, all of them go in
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        commit(staging, out)
    for model_dir, (_, cfg) in zip(dirs, plans):
        log.info("wrote %s (%s, max_batch_size %d)", model_dir, cfg.platform or cfg.backend, cfg.max_batch_size)
        if cfg.platform:
            log.info("%s: %s for servers with that backend (NVIDIA's Triton containers); the bundled `pspnet-trt "
                     "serve` loads only --backend python models", model_dir, cfg.platform)
    return dirs


def written_here(model_dir: Path) -> bool:
    """``model_dir`` is a model folder `pspnet-trt triton` wrote: it holds :data:`MARKER`, or (written by a version
    before the marker) a config.pbtxt carrying the ``pspnet_trt`` deploy parameter."""
    if model_dir.is_symlink() or not model_dir.is_dir():
        return False
    if (model_dir / MARKER).is_file():
        return True
    config = model_dir / "config.pbtxt"
    return config.is_file() and f'key: "{METADATA_KEY}"' in config.read_text(errors="replace")


def check_replaceable(model_dir: Path) -> None:
    """A UserError naming ``model_dir`` when it exists and is not a model folder this tool wrote."""
    if not (model_dir.exists() or model_dir.is_symlink()) or written_here(model_dir):
        return
    what = "a link" if model_dir.is_symlink() else "a folder" if model_dir.is_dir() else "a file"
    raise UserError(f"{model_dir} is {what} that `pspnet-trt triton` did not write (no {MARKER} in it): it is left "
                    f"as it is; move it away, or pass another --name (or --out)")


def _fill_synced(model_dir: Path, art: ArtifactIO, cfg: ModelConfig, opts: RepoOptions) -> None:
    model_dir.mkdir()
    _fill(model_dir, art, cfg, opts)
    for f in model_dir.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())


def model_readme(art: ArtifactIO, cfg: ModelConfig) -> str:
    from .server import ORT_INSTALL, SERVE_INSTALL

    i = art.info
    kind = cfg.platform or f"{cfg.backend} backend (runs {art.path.name} through pspnet_trt.Segmenter)"
    batch = (f"max_batch_size {cfg.max_batch_size}" + (", dynamic batching" if cfg.dynamic_batching else "")
             if cfg.max_batch_size else "no batching (max_batch_size 0)")
    io = "\n".join(f"- {k} `{n}`: {t} [{', '.join(str(d) for d in dims)}]"
                   for k, tensors in (("input", cfg.inputs), ("output", cfg.outputs)) for n, t, dims in tensors)
    if cfg.inputs[0][0] == FRAMES_INPUT:
        call = ("frame = cv2.imread('street.png')  # BGR uint8 HxWx3\n"
                "labels = seg.predict(frame)       # uint8 HxW, classes in labels.txt")
    else:
        call = ("frame = cv2.imread('street.png')  # BGR uint8; the client prepares the model's input as Segmenter does\n"
                "labels = seg.predict(frame)")
    if cfg.backend == "python":
        needs = [ORT_INSTALL] if art.kind == "onnx" else []
        install = "\n".join(f"    {c}" for c in (*needs, *SERVE_INSTALL))
        serve = f"""Serve the repository with the Triton server bundled in nvidia-pytriton (CPU, Python backend); install, in a
pspnet-trt checkout:

{install}

and run:

    pspnet-trt serve REPO --http-port 8000 --grpc-port 8001
"""
    else:
        serve = f"""Serve the repository with a Triton server that has the {cfg.platform} backend, e.g. NVIDIA's container:

    docker run --gpus all --rm -p 8000:8000 -p 8001:8001 -v $PWD/REPO:/models nvcr.io/nvidia/tritonserver:<yy.mm>-py3 \\
        tritonserver --model-repository=/models

The server bundled in nvidia-pytriton (`pspnet-trt serve`) loads only Python-backend models: for it, write this
model with `pspnet-trt triton {art.path.name} --out REPO --name {cfg.name} --backend python`.
"""
    return f"""# {cfg.name}

{i.model} ({i.precision}, {i.input_format} input {i.input_size[0]}x{i.input_size[1]}, {i.num_classes} classes in
`labels.txt`), served as {kind}; {batch}; {cfg.instances} instance(s) {cfg.instance_kind}.
Written by `pspnet-trt triton` from `{art.path.name}`; the artifact's deploy metadata is in the config's
`parameters` (key `{METADATA_KEY}`).

{io}

{serve}
Client (HTTP, or `grpc://127.0.0.1:8001`; `{SERVE_INSTALL[0]}` in a pspnet-trt checkout):

```python
import cv2
from pspnet_trt.serving import TritonSegmenter

seg = TritonSegmenter("http://127.0.0.1:8000", "{cfg.name}")
{call}
```
"""
