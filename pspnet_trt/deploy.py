"""What a deployed artifact must carry so that it can run without the zoo: :class:`DeployInfo`.

Export writes it into the ONNX metadata (key :data:`METADATA_KEY`), the engine build copies it
into the engine manifest, and every consumer reads it back through :mod:`pspnet_trt.artifacts`. It is
the single source of every preprocessing number downstream of the zoo.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from .errors import UserError
from .zoo import DatasetInfo, ModelSpec, Normalization

METADATA_KEY = "pspnet_trt"
OUTPUT_KINDS = ("labels", "logits", "both")
# The precision vocabulary: what an artifact is (DeployInfo.precision), and what a build may ask for (``best``
# lets TensorRT pick per layer; the engine's manifest then records the precision of its graph).
ARTIFACT_PRECISIONS = ("fp32", "fp16", "int8")
BUILD_PRECISIONS = (*ARTIFACT_PRECISIONS, "best")
# The float precisions: what `export` writes, and what layers kept out of INT8 run in (quantize/debug --float-dtype).
FLOAT_PRECISIONS = ("fp32", "fp16")
INPUT_NAME = "images"
OUTPUT_NAMES = {"labels": ("labels",), "logits": ("logits",), "both": ("logits", "labels")}
# What the artifact's input tensor holds (DeployInfo.input_format):
#   normalized: float32 N x 3 x H x W at the network size, already (x - mean) / std in the model's channel order
#               (the host does resize + normalise: pspnet_trt.preprocess.make_batch);
#   bgr8:       uint8 N x FH x FW x 3 BGR camera frames at DeployInfo.frame_size (cv2.imread / VideoCapture
#               layout); the graph casts, reorders channels, resizes to the network size, normalises, and
#               writes uint8 N x FH x FW labels at the frame size;
#   pixels:     float32 N x 3 x H x W at the network size, 0..255, in the model's channel order; the graph
#               normalises per channel (what DeepStream's Gst-nvinfer delivers with net-scale-factor=1).
INPUT_FORMATS = ("normalized", "bgr8", "pixels")
# How a bgr8 graph brings its prediction to the frame size (DeployInfo.frame_upsample):
#   logits: bilinear upsample of the class scores straight to the frame size, then ArgMax (sssegmentation's way);
#   labels: ArgMax at the network size, then nearest upsample of the label map (what the host does for a
#           labels artifact of the normalized format).
FRAME_UPSAMPLES = ("logits", "labels")
# Node-name prefix of a raw-frame graph's in-graph preprocessing (export/deploy_model.py: Preprocess): FP32 in the
# FP16 graph, no Q/DQ in the INT8 graph.
PREPROCESS_SCOPE = "/preprocess/"


class MetadataError(UserError, ValueError):
    """An artifact's metadata (ONNX metadata, engine manifest) is truncated or unreadable; names the file."""


def package_version() -> str:
    from .version import __version__

    return __version__


@dataclass(frozen=True)
class DeployInfo:
    model: str  # zoo name
    input_size: Tuple[int, int]  # static (H, W) of the artifact's input
    class_names: Tuple[str, ...]
    palette: Tuple[Tuple[int, int, int], ...]
    normalization: Normalization
    output: str = "labels"  # labels | logits | both
    batch: Optional[int] = 1  # None = dynamic batch
    precision: str = "fp32"
    checkpoint_sha256: Optional[str] = None  # None = random weights
    package_version: str = field(default_factory=package_version)
    extra: Dict[str, Any] = field(default_factory=dict)  # e.g. quantization details
    input_format: str = "normalized"  # see INPUT_FORMATS
    frame_size: Optional[Tuple[int, int]] = None  # (H, W) of the frames a bgr8 artifact takes; None otherwise
    frame_upsample: str = "labels"  # bgr8 only: see FRAME_UPSAMPLES

    def __post_init__(self) -> None:
        if self.output not in OUTPUT_KINDS:
            raise ValueError(f"output must be one of {OUTPUT_KINDS}, got {self.output!r}")
        if self.input_format not in INPUT_FORMATS:
            raise ValueError(f"input_format must be one of {INPUT_FORMATS}, got {self.input_format!r}")
        if (self.input_format == "bgr8") != (self.frame_size is not None):
            raise ValueError("frame_size is given for (and only for) input_format 'bgr8'")
        if self.input_format == "bgr8" and self.output != "labels":
            raise ValueError(f"a bgr8 artifact outputs labels at the frame size, not {self.output!r}")
        if self.precision not in ARTIFACT_PRECISIONS:
            raise ValueError(f"precision must be one of {ARTIFACT_PRECISIONS}, got {self.precision!r}")
        if self.frame_upsample not in FRAME_UPSAMPLES:
            raise ValueError(f"frame_upsample must be one of {FRAME_UPSAMPLES}, got {self.frame_upsample!r}")
        if len(self.class_names) != len(self.palette):
            raise ValueError("class_names and palette differ in length")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_name(self) -> str:
        return INPUT_NAME

    @property
    def output_names(self) -> Tuple[str, ...]:
        return OUTPUT_NAMES[self.output]

    @property
    def raw_frames(self) -> bool:
        """True when the artifact takes uint8 BGR frames (no host preprocessing at all)."""
        return self.input_format == "bgr8"

    @property
    def output_size(self) -> Tuple[int, int]:
        """(H, W) of the label/logit outputs: the frame size of a bgr8 artifact, else the input size."""
        return self.frame_size if self.frame_size is not None else self.input_size

    @property
    def input_dtype(self) -> str:
        return "uint8" if self.input_format == "bgr8" else "float32"

    def input_shape(self, batch: int) -> Tuple[int, ...]:
        """Shape of the input tensor for ``batch`` images (NHWC uint8 frames for bgr8, else NCHW)."""
        if self.frame_size is not None:
            return (batch, *self.frame_size, 3)
        return (batch, 3, *self.input_size)

    @classmethod
    def from_spec(cls, spec: ModelSpec, input_size: Optional[Tuple[int, int]] = None, num_classes: Optional[int] = None,
                  classes: Optional[DatasetInfo] = None, **kwargs: Any) -> DeployInfo:
        """The zoo entry's metadata; ``classes`` (what a checkpoint records: ``model.weights.classes``) replaces its
        class names and palette, and names its data set in ``extra["dataset"]`` when that is not the entry's."""
        names, palette = spec.class_names, spec.palette
        if classes is not None and num_classes in (None, classes.num_classes):
            names, palette = classes.class_names, classes.palette
            if classes.name != spec.dataset:
                kwargs["extra"] = {**(kwargs.get("extra") or {}), "dataset": classes.name}
        elif num_classes is not None and num_classes != spec.num_classes:
            names = tuple(f"class_{i}" for i in range(num_classes))
            palette = tuple(fallback_colour(i) for i in range(num_classes))
        return cls(model=spec.name, input_size=tuple(input_size or spec.deploy_size), class_names=names,  # type: ignore[arg-type]
                   palette=palette, normalization=spec.normalization, **kwargs)

    def with_(self, **changes: Any) -> DeployInfo:
        return replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["normalization"] = self.normalization.to_dict()
        d["input_size"] = list(self.input_size)
        d["class_names"] = list(self.class_names)
        d["palette"] = [list(p) for p in self.palette]
        d["frame_size"] = None if self.frame_size is None else list(self.frame_size)
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any], source: Optional[Union[str, Path]] = None) -> DeployInfo:
        """``source`` (the file it came from) names the file in the :class:`MetadataError` of bad metadata."""
        try:
            return cls(
                model=str(d["model"]),
                input_size=(int(d["input_size"][0]), int(d["input_size"][1])),
                class_names=tuple(str(n) for n in d["class_names"]),
                palette=tuple((int(p[0]), int(p[1]), int(p[2])) for p in d["palette"]),
                normalization=Normalization.from_dict(d["normalization"]),
                output=str(d["output"]),
                batch=None if d.get("batch") is None else int(d["batch"]),
                precision=str(d.get("precision", "fp32")),
                checkpoint_sha256=d.get("checkpoint_sha256"),
                package_version=str(d.get("package_version", "unknown")),
                extra=dict(d.get("extra") or {}),
                input_format=str(d.get("input_format", "normalized")),
                frame_size=None if d.get("frame_size") is None else (int(d["frame_size"][0]), int(d["frame_size"][1])),
                frame_upsample=str(d.get("frame_upsample", "labels")),
            )
        except (KeyError, TypeError, IndexError, ValueError, AttributeError) as e:
            where = f"{source}: metadata" if source else "metadata"
            version = d.get("package_version", "unknown") if isinstance(d, dict) else "unknown"
            raise MetadataError(f"{where} from pspnet-trt {version} is unreadable by pspnet-trt {package_version()} "
                                f"({type(e).__name__}: {e}); re-export the artifact with this version") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, source: Optional[Union[str, Path]] = None) -> DeployInfo:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            where = f"{source}: its" if source else "the"
            raise MetadataError(f"{where} pspnet-trt metadata is {json_problem(e, text)} ({e}); re-export the artifact") from None
        return cls.from_dict(data, source)


def json_problem(error: json.JSONDecodeError, text: str) -> str:
    """``truncated`` when the JSON text ends before the document does, else ``not valid JSON``."""
    if error.msg.startswith("Unterminated string") or error.pos >= len(text.rstrip()):
        return "truncated"
    return "not valid JSON"


def fallback_colour(i: int) -> Tuple[int, int, int]:
    """Pascal-VOC-style bit-interleaved colour map, for models fine-tuned to unnamed classes."""
    r = g = b = 0
    for bit in range(8):
        r |= ((i >> 0) & 1) << (7 - bit)
        g |= ((i >> 1) & 1) << (7 - bit)
        b |= ((i >> 2) & 1) << (7 - bit)
        i >>= 3
    return r, g, b
