"""Engine build, Polygraphy-style: small steps you can call alone.

    caps = capabilities(tensorrt.__version__)
    builder, network, parser = network_from_onnx("m_fp16.onnx", caps, strongly_typed=True)
    config = configure(builder, network, BuildConfig(precision="fp16"), caps, strongly_typed=True)
    data = build_serialized(builder, network, config)
    save_engine(data, "engines/m.engine", manifest)

:func:`build_engine` runs them all. Precision comes from the ONNX wherever the TensorRT version
allows (strongly typed network: FP16 graph, Q/DQ INT8); builder flags only on TensorRT < 10.12;
the implicit INT8 calibrator only on TensorRT < 11 and only when asked for (``--calibration``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Tuple, Union

from ..deploy import BUILD_PRECISIONS, PREPROCESS_SCOPE, DeployInfo
from ..deps import import_tensorrt
from ..errors import UserError
from ..files import atomic_path, sha256_file
from .manifest import Manifest, write_manifest
from .version import Capabilities, capabilities

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)


@dataclass
class BuildConfig:
    precision: str = "fp16"  # what the user asked for; the ONNX graph carries the real types
    workspace_gb: float = 2.0
    timing_cache: Optional[str] = None  # persistent across builds
    opt_level: Optional[int] = None  # builder optimisation level 0-5 (default 3)
    dla_core: Optional[int] = None  # Jetson DLA, with GPU fallback
    calibration: Optional[str] = None  # implicit INT8 calibration list (TensorRT < 11 only)
    calibration_root: Optional[str] = None  # dataset root the list's image paths are relative to
    max_batch: int = 1  # largest batch of a dynamic-batch ONNX (its optimization profile)

    def __post_init__(self) -> None:
        if self.precision not in BUILD_PRECISIONS:
            raise UserError(f"precision must be one of {BUILD_PRECISIONS}, got {self.precision!r}")
        if self.opt_level is not None and not 0 <= self.opt_level <= 5:
            raise UserError(f"--opt-level must be 0..5, got {self.opt_level}")
        if self.max_batch < 1:
            raise UserError(f"--max-batch must be >= 1, got {self.max_batch}")


def use_strong_typing(caps: Capabilities, cfg: BuildConfig) -> bool:
    """Strongly typed whenever the version has it, except the implicit-INT8 path (needs weak typing)."""
    return caps.strongly_typed and cfg.calibration is None


def network_from_onnx(onnx_path: Union[str, Path], caps: Capabilities, strongly_typed: bool
                      ) -> Tuple[trt.Builder, trt.INetworkDefinition, trt.OnnxParser]:
    """Parse ``onnx_path`` into a new network; errors list every parser message."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if caps.explicit_batch_flag:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise UserError(f"TensorRT {caps.label} cannot parse {onnx_path}: " + "; ".join(errors))
    return builder, network, parser


def has_fp16_layers(info: Optional[DeployInfo]) -> bool:
    """Whether an INT8 graph keeps layers in FP16 (``quantize --mixed-budget``, FP16 islands)."""
    q = info.extra.get("quantization", {}) if info is not None else {}
    return bool(q.get("kept_float")) and q.get("kept_float_dtype") == "fp16"


def precision_flags(cfg: BuildConfig, caps: Capabilities, strongly_typed: bool,
                    info: Optional[DeployInfo] = None) -> List[trt.BuilderFlag]:
    """Builder flags for the weakly typed path (TensorRT < 11; deprecated from 10.12); none when strongly typed.
    An INT8 graph with FP16 islands also gets FP16, else TensorRT would run those layers in FP32."""
    import tensorrt as trt

    if strongly_typed:
        return []
    if not caps.precision_flags:
        raise UserError(f"TensorRT {caps.label} has no FP16/INT8 builder flags: export the precision into the ONNX "
                        "(`pspnet-trt export --precision fp16`, `pspnet-trt quantize`) and build without --calibration")
    if caps.weak_typing_deprecated:
        log.warning("TensorRT %s deprecates builder precision flags (weak typing, needed by --calibration); "
                    "TensorRT 11 removes them: prefer `pspnet-trt quantize` (explicit Q/DQ)", caps.label)
    flags = []
    if cfg.precision in ("fp16", "best") or (cfg.precision == "int8" and has_fp16_layers(info)):
        flags.append(trt.BuilderFlag.FP16)
    if cfg.precision in ("int8", "best"):
        flags.append(trt.BuilderFlag.INT8)
    return flags


def check_precision(cfg: BuildConfig, info: Optional[DeployInfo], strongly_typed: bool) -> None:
    """A strongly typed build takes its precision from the ONNX: refuse a --precision the graph does not
    have (it would build, say, an FP32 engine and label it fp16)."""
    if strongly_typed and info is not None and cfg.precision not in (info.precision, "best"):
        fix = {"fp16": "`pspnet-trt export --precision fp16`", "int8": "`pspnet-trt quantize`",
               "fp32": "`pspnet-trt export --precision fp32`"}[cfg.precision]
        raise UserError(f"this ONNX is a {info.precision} graph and TensorRT >= 9 builds it strongly typed, so the "
                        f"engine would be {info.precision}, not {cfg.precision}: make the {cfg.precision} ONNX with "
                        f"{fix}, or build with --precision {info.precision}")


def optimization_profile(builder: trt.Builder, network: trt.INetworkDefinition, config: trt.IBuilderConfig,
                         max_batch: int) -> Optional[trt.IOptimizationProfile]:
    """For an input with a dynamic batch (``export --dynamic-batch``): batches 1..``max_batch``, tuned for
    ``max_batch``. TensorRT refuses to build a dynamic network without one. None for static inputs."""
    import tensorrt as trt

    inp = network.get_input(0)
    shape = [inp.shape[i] for i in range(len(inp.shape))]
    if shape[0] != -1:
        return None
    if -1 in shape[1:]:
        raise UserError(f"input {inp.name} has dynamic dimensions {shape} other than the batch; export a static size")
    profile = builder.create_optimization_profile()
    rest = shape[1:]
    profile.set_shape(inp.name, trt.Dims([1, *rest]), trt.Dims([max_batch, *rest]), trt.Dims([max_batch, *rest]))
    config.add_optimization_profile(profile)
    return profile


def pin_preprocessing(network: trt.INetworkDefinition) -> int:
    """Weakly typed builds (FP16/INT8 flags let TensorRT pick each layer's precision): keep the float layers of a
    raw-frame graph's preprocessing in FP32, so its exact integer sums (up to 255 * 2048, beyond FP16's range)
    stay exact and INT8 calibration leaves them alone. Returns how many layers were pinned."""
    import tensorrt as trt

    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if not layer.name.startswith(PREPROCESS_SCOPE) or layer.get_output(0).dtype != trt.float32:
            continue
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        pinned += 1
    if pinned:
        log.info("weakly typed build: %d preprocessing layers pinned to FP32", pinned)
    return pinned


def configure(builder: trt.Builder, network: trt.INetworkDefinition, cfg: BuildConfig, caps: Capabilities,
              strongly_typed: bool, info: Optional[DeployInfo] = None) -> trt.IBuilderConfig:
    """An IBuilderConfig for ``cfg``: workspace, timing cache, optimisation level, DLA, precision."""
    import tensorrt as trt

    if cfg.calibration and not caps.implicit_int8:
        raise UserError(f"TensorRT {caps.label} removed implicit INT8 calibration: quantize the ONNX with "
                        "`pspnet-trt quantize` (explicit Q/DQ) and build that without --calibration")
    if cfg.opt_level is not None and not caps.opt_level:
        raise UserError(f"TensorRT {caps.label} has no builder optimisation level (from 8.6): drop --opt-level")
    check_precision(cfg, info, strongly_typed)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(cfg.workspace_gb * (1 << 30)))
    if cfg.opt_level is not None:
        config.builder_optimization_level = cfg.opt_level
    profile = optimization_profile(builder, network, config, cfg.max_batch)
    if cfg.timing_cache:
        path = Path(cfg.timing_cache)
        cache = config.create_timing_cache(path.read_bytes() if path.is_file() else b"")
        if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
            log.warning("timing cache %s does not fit this TensorRT/GPU (or is unreadable): building without it; "
                        "it is rewritten after the build", path)
    flags = precision_flags(cfg, caps, strongly_typed, info)
    for flag in flags:
        config.set_flag(flag)
    if flags and pin_preprocessing(network):
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    if cfg.dla_core is not None:
        if builder.num_DLA_cores == 0:
            raise UserError(f"--dla-core given but TensorRT {caps.label} sees no DLA here (DLA exists on Jetson "
                            "AGX/NX only, and TensorRT 11.0-11.2 dropped DLA support)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = cfg.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if cfg.calibration:
        from .calibrator import entropy_calibrator

        if info is None:
            raise UserError("implicit INT8 calibration needs the ONNX's metadata (input size, normalisation)")
        if (info.batch or cfg.max_batch) != 1:  # the calibrator feeds one image per batch
            raise UserError("implicit INT8 calibration (--calibration) supports batch-1 engines only: quantize the "
                            "ONNX with `pspnet-trt quantize` (explicit Q/DQ, any batch) instead")
        config.int8_calibrator = entropy_calibrator(cfg.calibration, info, cfg.calibration_root)
        if profile is not None:
            config.set_calibration_profile(profile)
    if caps.progress_monitor:
        from .progress import progress_monitor

        config.progress_monitor = progress_monitor()
    return config


def build_serialized(builder: trt.Builder, network: trt.INetworkDefinition, config: trt.IBuilderConfig) -> bytes:
    """Build; the serialized engine as bytes."""
    data = builder.build_serialized_network(network, config)
    if data is None:
        raise UserError("TensorRT failed to build the engine (see the TensorRT messages above)")
    return bytes(memoryview(data))


def save_timing_cache(config: trt.IBuilderConfig, path: Union[str, Path]) -> None:
    cache = config.get_timing_cache()
    if cache is not None:
        with atomic_path(path) as tmp:
            tmp.write_bytes(bytes(memoryview(cache.serialize())))


def save_engine(data: bytes, out: Union[str, Path], manifest: Manifest) -> Path:
    """Engine and manifest, each written atomically (engine first: a manifest never points at nothing).
    The manifest records the engine's sha256 and size: a crash between the two writes leaves an engine
    beside an older manifest, and loading refuses that pair."""
    out = Path(out)
    manifest = replace(manifest, engine_sha256=hashlib.sha256(data).hexdigest(), engine_bytes=len(data))
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    write_manifest(out, manifest)
    return out


def build_engine(onnx_path: Union[str, Path], out: Union[str, Path], cfg: BuildConfig) -> Path:
    """ONNX from `pspnet-trt export`/`quantize` -> engine + manifest at ``out``."""
    from ..artifacts import check_out, manifest_path, read_onnx_info
    from ..runtime.cuda import device_info

    check_out(out, "engine", inputs=[onnx_path, cfg.calibration], also=[manifest_path(out)])
    trt = import_tensorrt()  # a clear message if it is missing
    gpu_name, cc = device_info()
    caps = capabilities(str(trt.__version__))
    info = read_onnx_info(onnx_path)
    strongly = use_strong_typing(caps, cfg)
    start = time.perf_counter()
    builder, network, _parser = network_from_onnx(onnx_path, caps, strongly)
    config = configure(builder, network, cfg, caps, strongly, info)
    data = build_serialized(builder, network, config)
    calibrator_error = getattr(config.int8_calibrator, "error", None) if cfg.calibration else None
    if calibrator_error:  # TensorRT took the failure for the end of the data and calibrated on fewer images
        raise UserError(f"implicit INT8 calibration stopped early, no engine written: {calibrator_error}")
    if cfg.timing_cache:
        save_timing_cache(config, cfg.timing_cache)
    seconds = time.perf_counter() - start
    precision = info.precision if strongly or cfg.precision == "best" else cfg.precision
    manifest = Manifest(
        deploy=info.with_(precision=precision).to_dict(),
        tensorrt_version=str(trt.__version__), gpu={"name": gpu_name, "compute_capability": cc},
        precision=precision, input_name=info.input_name, input_shape=list(info.input_shape(info.batch or -1)),
        outputs=list(info.output_names), onnx=str(onnx_path), onnx_sha256=sha256_file(onnx_path),
        build_flags={**asdict(cfg), "strongly_typed": strongly}, build_seconds=round(seconds, 1),
    )
    log.info("built %s in %.0f s (TensorRT %s, %s, %s)", out, seconds, caps.label, gpu_name,
             "strongly typed" if strongly else "builder flags")
    return save_engine(data, out, manifest)


def labels_dtype() -> str:
    """uint8 labels where the installed TensorRT can cast to them (>= 10), else int32; uint8 without TensorRT."""
    try:
        import tensorrt
    except ImportError:
        return "uint8"
    from .version import capabilities

    return "uint8" if capabilities(str(tensorrt.__version__)).uint8_labels else "int32"
