"""The model zoo: one :class:`ModelSpec` per entry, data only.

Every number a later stage needs (input size, normalisation, class names, palette) is written
here once. Export copies it into the ONNX metadata, the engine build copies that into the engine
manifest, and the runtime reads it back from there; nothing downstream re-types it.

The 12 ResNet PSPNet entries are sssegmentation's published checkpoints
(``ssseg/configs/pspnet/pspnet_resnet{50,101}os{8,16}_{voc,ade20k,cityscapes}.py``), the 3 ``mv2_os8_*`` ones its
MobileNetV2-D8 PSPNets (``ssseg/configs/mobilenetv2/pspnet_mobilenetv2os8_{voc,ade20k,cityscapes}.py``).
``r18_os8_camvid`` is our small CPU demo model, with the layout sssegmentation's own code gives a
ResNet-18 PSPNet (PPM 128 channels, auxiliary head 64); ``mv2_os8_camvid`` the edge one, MobileNetV2-D8 with the
same narrow head. Their trained checkpoints ship in ``samples/``.
Which weights a zoo name gets is decided in one place: :func:`pspnet_trt.models.create_model`.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .errors import UnknownModel

# sssegmentation's Normalize: images are read BGR by cv2, converted to RGB, then
# (x - mean) / std on the 0-255 scale. ImageNet statistics x 255, RGB order.
IMAGENET_MEAN_255: Tuple[float, float, float] = (123.675, 116.28, 103.53)
IMAGENET_STD_255: Tuple[float, float, float] = (58.395, 57.12, 57.375)

# Label value that every loss and metric ignores (sssegmentation uses -100 internally; our
# datasets map every "void" label to 255 so that labels fit in uint8).
IGNORE_INDEX = 255

# sssegmentation's model store: one release folder per backbone family (``ModelSpec.release``: ssseg_pspnet holds
# the ResNet PSPNets, ssseg_mobilenet the MobileNetV2 ones). PSPNET_TRT_MODEL_BASE_URL replaces the folder: one flat
# mirror folder that may hold any entry's files.
MODEL_STORE_URL = "https://github.com/SegmentationBLWX/modelstore/releases/download"
DEFAULT_RELEASE = "ssseg_pspnet"
DEFAULT_MODEL_BASE_URL = f"{MODEL_STORE_URL}/{DEFAULT_RELEASE}"
MODEL_BASE_URL_ENV = "PSPNET_TRT_MODEL_BASE_URL"


def model_base_url(release: str = DEFAULT_RELEASE) -> str:
    """``$PSPNET_TRT_MODEL_BASE_URL`` (a flat mirror folder holding any entry's files), else the release folder
    ``release`` of sssegmentation's model store."""
    return (os.environ.get(MODEL_BASE_URL_ENV) or f"{MODEL_STORE_URL}/{release}").rstrip("/")


def published_names(config: str, suffix: str) -> Tuple[str, ...]:
    """Both names sssegmentation has published a file under: ``<config><suffix>`` (its docs since the
    "format model zoo links" commit, 2023-11-22), then ``<config>_train<suffix>`` (the older model-zoo page)."""
    return f"{config}{suffix}", f"{config}_train{suffix}"


@dataclass(frozen=True)
class Normalization:
    """How an image becomes the model input: ``(rgb_or_bgr(x) - mean) / std`` on 0-255 values."""

    mean: Tuple[float, float, float] = IMAGENET_MEAN_255
    std: Tuple[float, float, float] = IMAGENET_STD_255
    channel_order: str = "rgb"  # channel order of the *model input*; images are read BGR

    def to_dict(self) -> Dict[str, object]:
        return {"mean": list(self.mean), "std": list(self.std), "channel_order": self.channel_order}

    @classmethod
    def from_dict(cls, d: Dict[str, object]) -> Normalization:
        mean = tuple(float(v) for v in d["mean"])  # type: ignore[attr-defined]
        std = tuple(float(v) for v in d["std"])  # type: ignore[attr-defined]
        order = str(d["channel_order"]).lower()
        if len(mean) != 3 or len(std) != 3 or order not in ("rgb", "bgr"):
            raise ValueError(f"invalid normalisation {d!r}: need 3 means, 3 stds, channel_order rgb|bgr")
        return cls(mean=mean, std=std, channel_order=order)  # type: ignore[arg-type]


@dataclass(frozen=True)
class DatasetInfo:
    """Class names and colours of a dataset; ``palette`` is RGB."""

    name: str
    class_names: Tuple[str, ...]
    palette: Tuple[Tuple[int, int, int], ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _load_datasets() -> Dict[str, DatasetInfo]:
    raw = json.loads((Path(__file__).with_name("datasets.json")).read_text())
    out = {}
    for name, d in raw.items():
        names = tuple(d["class_names"])
        palette = tuple(tuple(int(c) for c in p) for p in d["palette"])
        assert len(names) == len(palette), name
        out[name] = DatasetInfo(name, names, palette)  # type: ignore[arg-type]
    return out


DATASETS: Dict[str, DatasetInfo] = _load_datasets()


@dataclass(frozen=True)
class ModelSpec:
    """One zoo entry: architecture, data, deployment defaults and provenance."""

    name: str
    backbone: str  # a name in pspnet_trt.models.backbones.BACKBONES (constructor, channels, ImageNet weights)
    output_stride: int  # 8 or 16
    dataset: str  # key of DATASETS
    crop_size: Tuple[int, int]  # training crop, (H, W)
    deploy_size: Tuple[int, int]  # default static input size of exported artifacts, (H, W)
    # sssegmentation's test Resize: keep ratio so the image fits (long, short); None = native size.
    eval_resize: Optional[Tuple[int, int]]
    ppm_channels: int = 512  # PPM branch / bottleneck width ("feats_channels")
    aux_channels: int = 512  # auxiliary head width
    dropout: float = 0.1
    pool_scales: Tuple[int, ...] = (1, 2, 3, 6)
    normalization: Normalization = field(default_factory=Normalization)
    config: Optional[str] = None  # sssegmentation config name, for published entries
    published_miou: Optional[float] = None
    checkpoint_files: Tuple[str, ...] = ()  # published file names, tried in this order under model_base_url()
    release: str = DEFAULT_RELEASE  # the model store's release folder that holds checkpoint_files and log_files
    log_files: Tuple[str, ...] = ()  # the training log's published names
    sha256: Optional[str] = None  # sssegmentation publishes none
    # A checkpoint this repository ships, relative to its root (a checkout; an installed package has none).
    shipped_checkpoint: Optional[str] = None
    # training schedule (sssegmentation's recipe; batch is the total over all GPUs)
    lr: float = 0.01
    batch_size: int = 16
    epochs: int = 60
    train_split: str = "train"
    eval_split: str = "val"

    @property
    def data(self) -> DatasetInfo:
        return DATASETS[self.dataset]

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def class_names(self) -> Tuple[str, ...]:
        return self.data.class_names

    @property
    def palette(self) -> Tuple[Tuple[int, int, int], ...]:
        return self.data.palette

    @property
    def urls(self) -> Tuple[str, ...]:
        """Every URL the published checkpoint may be at, in the order a download tries them."""
        return tuple(f"{model_base_url(self.release)}/{name}" for name in self.checkpoint_files)

    @property
    def url(self) -> Optional[str]:
        """The first of :attr:`urls` (None: no published checkpoint)."""
        return self.urls[0] if self.urls else None

    @property
    def log_urls(self) -> Tuple[str, ...]:
        return tuple(f"{model_base_url(self.release)}/{name}" for name in self.log_files)


def _published(backbone: str, os: int, dataset: str, miou: float, *, short: str = "",
               release: str = DEFAULT_RELEASE) -> ModelSpec:
    """sssegmentation's ``pspnet_<backbone>os<os>_<dataset>`` config as the zoo entry ``<short>_os<os>_<dataset>``
    (``short``: e.g. r50, mv2); its files are in the model store's folder ``release``."""
    config = f"pspnet_{backbone}os{os}_{dataset}"
    if dataset == "cityscapes":
        sizes = dict(crop_size=(512, 1024), deploy_size=(512, 1024), eval_resize=(2048, 1024))
        schedule = dict(batch_size=8, epochs=220, train_split="train", eval_split="val")
    else:
        sizes = dict(crop_size=(512, 512), deploy_size=(512, 512), eval_resize=(2048, 512))
        epochs = 60 if dataset == "voc" else 130
        train_split = "trainaug" if dataset == "voc" else "train"
        schedule = dict(batch_size=16, epochs=epochs, train_split=train_split, eval_split="val")
    return ModelSpec(
        name=f"{short}_os{os}_{dataset}",
        backbone=backbone,
        output_stride=os,
        dataset=dataset,
        config=config,
        published_miou=miou,
        checkpoint_files=published_names(config, ".pth"),
        log_files=published_names(config, ".log"),
        release=release,
        **sizes,  # type: ignore[arg-type]
        **schedule,  # type: ignore[arg-type]
    )


def _resnet(depth: int, os: int, dataset: str, miou: float) -> ModelSpec:
    return _published(f"resnet{depth}", os, dataset, miou, short=f"r{depth}")


def _mobilenetv2(dataset: str, miou: float) -> ModelSpec:
    # ssseg/configs/mobilenetv2/pspnet_mobilenetv2os8_*.py: PPM 512 on the 320-channel map, auxiliary 512 on the 96
    return _published("mobilenetv2", 8, dataset, miou, short="mv2", release="ssseg_mobilenet")



def _camvid(name: str, backbone: str) -> ModelSpec:
    """One of this project's own CamVid models: output stride 8, a narrow head (PPM 128, auxiliary 64) for the
    CPU and edge GPUs, trained and evaluated at CamVid's 360x480; its checkpoint ships in ``samples/``."""
    return ModelSpec(name=name, backbone=backbone, output_stride=8, dataset="camvid", crop_size=(360, 480),
                     deploy_size=(360, 480), eval_resize=None, ppm_channels=128, aux_channels=64, batch_size=8,
                     epochs=30, train_split="train", eval_split="test",
                     shipped_checkpoint=f"samples/{name}_camvid.pth")


_ENTRIES = [
    _resnet(50, 8, "voc", 77.93),
    _resnet(50, 16, "voc", 76.29),
    _resnet(101, 8, "voc", 79.04),
    _resnet(101, 16, "voc", 77.92),
    _resnet(50, 8, "ade20k", 42.64),
    _resnet(50, 16, "ade20k", 40.23),
    _resnet(101, 8, "ade20k", 44.55),
    _resnet(101, 16, "ade20k", 43.40),
    _resnet(50, 8, "cityscapes", 79.05),
    _resnet(50, 16, "cityscapes", 77.13),
    _resnet(101, 8, "cityscapes", 79.94),
    _resnet(101, 16, "cityscapes", 77.43),
    # CPU demo model: trained by this project; no published checkpoint, the trained one ships in samples/.
    _camvid("r18_os8_camvid", "resnet18"),
    _mobilenetv2("voc", 68.40),
    _mobilenetv2("ade20k", 35.09),
    _mobilenetv2("cityscapes", 73.64),
    # The edge CPU model: MobileNetV2-D8 with the narrow head of r18_os8_camvid; trained by this project from
    # scratch (train/config.py, CPU_OVERRIDES), the trained checkpoint ships in samples/.
    _camvid("mv2_os8_camvid", "mobilenetv2"),
]

ZOO: Dict[str, ModelSpec] = {spec.name: spec for spec in _ENTRIES}


def get_spec(name: str) -> ModelSpec:
    """The zoo entry called ``name``; a clear error with the closest names otherwise."""
    try:
        return ZOO[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(ZOO), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownModel(f"unknown zoo model {name!r}.{hint} Run `pspnet-trt zoo` for the list.") from None


def table() -> Tuple[List[str], List[List[Any]]]:
    """The zoo as (header, rows), what `pspnet-trt zoo` prints as a markdown table."""
    rows: List[List[Any]] = [
        [s.name, f"{s.backbone}-D{s.output_stride}", s.dataset, s.num_classes, f"{s.crop_size[0]}x{s.crop_size[1]}",
         f"{s.deploy_size[0]}x{s.deploy_size[1]}",
         f"{s.published_miou:.2f}" if s.published_miou is not None
         else f"- (checkpoint: {s.shipped_checkpoint})" if s.shipped_checkpoint else "- (train it: make demo)"]
        for s in ZOO.values()]
    return ["name", "backbone", "dataset", "classes", "crop (HxW)", "deploy (HxW)", "published mIoU"], rows
