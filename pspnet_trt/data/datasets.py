"""Dataset layouts. Each reader turns a root + split into (image path, label path) pairs and a
label mapping to train ids with 255 = ignore."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..errors import UserError
from ..preprocess import read_image
from ..zoo import IGNORE_INDEX, ModelSpec

LabelMap = Callable[[np.ndarray], np.ndarray]


class DatasetError(UserError):
    """A dataset folder, list or file that cannot be used; the message names it."""


@dataclass
class Sample:
    image: np.ndarray  # BGR uint8, HxWx3
    label: np.ndarray  # uint8 HxW, 255 = ignore
    name: str


class SegDataset(Sequence[Sample]):
    """A list of (image, label) files plus the mapping of raw label values to train ids."""

    def __init__(self, kind: str, root: Path, split: str, items: List[Tuple[Path, Path]], label_map: LabelMap) -> None:
        if not items:
            raise DatasetError(f"{kind} split {split!r} under {root} has no images")
        self.kind, self.root, self.split = kind, root, split
        self.items = items
        self.label_map = label_map

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Sample:  # type: ignore[override]
        image_path, label_path = self.items[i]
        try:
            image = read_image(str(image_path))
        except OSError as e:
            raise DatasetError(str(e)) from None
        raw = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise DatasetError(f"cannot read label map {label_path}: missing, unreadable or not an image")
        if raw.ndim == 3:
            raise DatasetError(f"label map {label_path} has {raw.shape[2]} channels; expected a single-channel PNG of class ids")
        if raw.shape[:2] != image.shape[:2]:
            raise DatasetError(
                f"label map {label_path} is {raw.shape[1]}x{raw.shape[0]} but its image {image_path} is "
                f"{image.shape[1]}x{image.shape[0]} (WxH): the pair does not belong together"
            )
        return Sample(image=image, label=self.label_map(raw), name=image_path.stem)

    def subset(self, indices: Sequence[int]) -> SegDataset:
        return SegDataset(self.kind, self.root, self.split, [self.items[i] for i in indices], self.label_map)


def lut_map(table: Dict[int, int], default: int = IGNORE_INDEX) -> LabelMap:
    """Label mapping through a 256-entry lookup table; values not in ``table`` become ``default``."""
    lut = np.full(256, default, np.uint8)
    for k, v in table.items():
        lut[k] = v
    return lambda raw: lut[raw.astype(np.uint8)]


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{what}: {path} is not a directory")
    return path


# --- CamVid, SegNet layout: <split>/ + <split>annot/ (+ <split>.txt with foreign absolute paths) --------------

CAMVID_CLASSES = 11  # label 11 = void
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def camvid(root: Path, split: str) -> SegDataset:
    """SegNet layout: ``<split>/`` images, ``<split>annot/`` PNG labels of the same stem."""
    images = _require_dir(root / split, f"CamVid split {split!r} (expected SegNet layout train/ trainannot/ val/ ...)")
    annots = _require_dir(root / f"{split}annot", f"CamVid labels of split {split!r}")
    listing = root / f"{split}.txt"
    if listing.is_file():
        # The list files hold absolute paths from another machine: resolve them by file name.
        files = [images / Path(line.split()[0]).name for line in listing.read_text().splitlines() if line.strip()]
    else:
        files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    items = [(f, annots / f"{f.stem}.png") for f in files]
    return SegDataset("camvid", root, split, _existing(items, f"CamVid split {split!r}"), lut_map({i: i for i in range(CAMVID_CLASSES)}))


def _existing(items: List[Tuple[Path, Path]], what: str) -> List[Tuple[Path, Path]]:
    missing = [str(p) for pair in items for p in pair if not p.is_file()]
    if missing:
        raise DatasetError(f"{what}: {len(missing)} listed files are missing, e.g. {missing[0]}")
    return items


# --- Cityscapes: leftImg8bit/<split>/<city>/*_leftImg8bit.png + gtFine/<split>/<city>/*_gtFine_labelTrainIds.png
# (or *_labelIds.png, mapped with the official table: labelId -> trainId, others ignored) ----------------------

CITYSCAPES_ID_TO_TRAINID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                            25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def cityscapes(root: Path, split: str) -> SegDataset:
    images = _require_dir(root / "leftImg8bit" / split, f"Cityscapes split {split!r} (expected leftImg8bit/{split}/<city>/)")
    gt = _require_dir(root / "gtFine" / split, f"Cityscapes labels of split {split!r} (expected gtFine/{split}/<city>/)")
    files = sorted(images.glob("*/*_leftImg8bit.png"))
    base = [(f, gt / f.parent.name / f.name.replace("_leftImg8bit.png", "_gtFine_")) for f in files]
    if base and Path(f"{base[0][1]}labelTrainIds.png").is_file():
        items = [(f, Path(f"{g}labelTrainIds.png")) for f, g in base]
        label_map = lut_map({i: i for i in range(19)})
    else:
        items = [(f, Path(f"{g}labelIds.png")) for f, g in base]
        label_map = lut_map(CITYSCAPES_ID_TO_TRAINID)
    return SegDataset("cityscapes", root, split, _existing(items, f"Cityscapes split {split!r}"), label_map)


# --- Pascal VOC 2012 / SBD-aug: JPEGImages/, SegmentationClass[Aug]/, ImageSets/Segmentation/<split>.txt -------

def voc(root: Path, split: str) -> SegDataset:
    if (root / "VOC2012").is_dir():
        root = root / "VOC2012"
    listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not listing.is_file():
        raise DatasetError(f"VOC split list {listing} does not exist (splits: train, val, trainaug)")
    labels = root / ("SegmentationClassAug" if split == "trainaug" else "SegmentationClass")
    if split != "trainaug" and not labels.is_dir():
        labels = root / "SegmentationClassAug"
    names = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
    items = [(root / "JPEGImages" / f"{n}.jpg", labels / f"{n}.png") for n in names]
    # VOC PNGs are palette images: cv2 reads the indices with IMREAD_UNCHANGED; 255 = boundary = ignore
    return SegDataset("voc", root, split, _existing(items, f"VOC split {split!r}"), lut_map({i: i for i in range(21)}))


# --- ADE20k: ADEChallengeData2016/images|annotations/{training,validation}; label 0 = ignore, k -> k-1 ---------

def ade20k(root: Path, split: str) -> SegDataset:
    if (root / "ADEChallengeData2016").is_dir():
        root = root / "ADEChallengeData2016"
    folder = {"train": "training", "val": "validation"}.get(split, split)
    images = _require_dir(root / "images" / folder, f"ADE20k split {split!r}")
    annots = _require_dir(root / "annotations" / folder, f"ADE20k labels of split {split!r}")
    items = [(f, annots / f"{f.stem}.png") for f in sorted(images.glob("*.jpg"))]
    return SegDataset("ade20k", root, split, _existing(items, f"ADE20k split {split!r}"),
                      lut_map({k: k - 1 for k in range(1, 151)}))


LAYOUTS: Dict[str, Callable[[Path, str], SegDataset]] = {
    "camvid": camvid, "cityscapes": cityscapes, "voc": voc, "ade20k": ade20k,
}


def open_dataset(kind: str, root: str | Path, split: str) -> SegDataset:
    """The ``split`` of dataset ``kind`` (``camvid``, ``cityscapes``, ``voc``, ``ade20k``) under ``root``."""
    if kind not in LAYOUTS:
        raise DatasetError(f"unknown dataset layout {kind!r}; known: {sorted(LAYOUTS)}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist")
    return LAYOUTS[kind](root, split)


def dataset_for_spec(spec: ModelSpec, root: str | Path, split: Optional[str] = None) -> SegDataset:
    """The dataset a zoo entry was trained on, at ``root`` (default split: the entry's eval split)."""
    return open_dataset(spec.dataset, root, split or spec.eval_split)
