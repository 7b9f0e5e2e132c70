"""Dataset layouts. Each reader turns a root + split into (image path, label path) pairs and a
label mapping from the raw label values on disk to train ids, with 255 = ignore."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..errors import UserError
from ..preprocess import read_image
from ..zoo import DATASETS, IGNORE_INDEX, ModelSpec

# raw label array as cv2.imread(IMREAD_UNCHANGED) returns it -> uint8 HxW train ids (255 = ignore);
# raises ValueError with the reason when the array cannot be a label map of this dataset.
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
            raise DatasetError(f"{e} (listed in {self.kind} split {self.split!r} under {self.root})") from None
        label = self.read_label(i)
        if label.shape[:2] != image.shape[:2]:
            raise DatasetError(
                f"label map {label_path} is {label.shape[1]}x{label.shape[0]} but its image {image_path} is "
                f"{image.shape[1]}x{image.shape[0]} (WxH): the pair does not belong together; fix or remove it"
            )
        return Sample(image=image, label=label, name=image_path.stem)

    def read_label(self, i: int) -> np.ndarray:
        """The label map of item ``i`` in train ids (uint8, 255 = ignore), without reading its image."""
        label_path = self.items[i][1]
        raw = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise DatasetError(f"cannot read label map {label_path}: missing, unreadable or not an image")
        try:
            return self.label_map(raw)
        except ValueError as e:
            raise DatasetError(f"label map {label_path}: {e}") from None

    def subset(self, indices: Sequence[int]) -> SegDataset:
        return SegDataset(self.kind, self.root, self.split, [self.items[i] for i in indices], self.label_map)

    def __repr__(self) -> str:
        return f"SegDataset({self.kind!r}, {str(self.root)!r}, split={self.split!r}, {len(self)} images)"


def _single_channel(raw: np.ndarray) -> np.ndarray:
    if raw.ndim == 3 and raw.shape[2] > 1:
        raise ValueError(f"has {raw.shape[2]} channels; expected a single-channel PNG of class ids")
    raw = raw.reshape(raw.shape[:2])
    if raw.dtype != np.uint8:
        if raw.dtype.kind not in "ui" or raw.size and (raw.min() < 0 or raw.max() > 255):
            raise ValueError(f"holds {raw.dtype} values outside 0..255; expected 8-bit class ids")
        raw = raw.astype(np.uint8)
    return raw


def lut_map(table: Dict[int, int], default: int = IGNORE_INDEX) -> LabelMap:
    """Label mapping through a 256-entry lookup table; values not in ``table`` become ``default``."""
    lut = np.full(256, default, np.uint8)
    for k, v in table.items():
        lut[k] = v
    return lambda raw: lut[_single_channel(raw)]


def identity_map(num_classes: int) -> LabelMap:
    """Class ids 0..num_classes-1 kept; every other value (void, boundary) becomes 255."""
    return lut_map({i: i for i in range(num_classes)})


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{what}: {path} is not a directory")
    return path


def _existing(items: List[Tuple[Path, Path]], what: str) -> List[Tuple[Path, Path]]:
    missing = [str(p) for pair in items for p in pair if not p.is_file()]
    if missing:
        raise DatasetError(f"{what}: {len(missing)} listed files are missing, e.g. {missing[0]}")
    return items


def _splits(folder: Path, pattern: str) -> str:
    found = sorted(p.stem for p in folder.glob(pattern)) if folder.is_dir() else []
    return ", ".join(found) if found else "none"


# --- CamVid, SegNet layout: <split>/ + <split>annot/ (+ <split>.txt with foreign absolute paths) --------------

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def camvid(root: Path, split: str) -> SegDataset:
    """SegNet layout: ``<split>/`` images, ``<split>annot/`` PNG labels of the same stem; label 11 = void."""
    where = f"CamVid split {split!r} (SegNet layout <split>/ + <split>annot/; splits here: " \
            f"{', '.join(sorted(p.name[:-5] for p in root.glob('*annot') if p.is_dir())) or 'none'})"
    images = _require_dir(root / split, where)
    annots = _require_dir(root / f"{split}annot", f"CamVid labels of split {split!r}")
    listing = root / f"{split}.txt"
    if listing.is_file():
        # The list files hold absolute paths from another machine: resolve them by file name.
        rows = [line.split() for line in listing.read_text().splitlines() if line.strip()]
        items = [(images / Path(r[0]).name, annots / (Path(r[1]).name if len(r) > 1 else f"{Path(r[0]).stem}.png"))
                 for r in rows]
    else:
        files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        items = [(f, annots / f"{f.stem}.png") for f in files]
    return SegDataset("camvid", root, split, _existing(items, f"CamVid split {split!r}"),
                      identity_map(DATASETS["camvid"].num_classes))


# --- Cityscapes: leftImg8bit/<split>/<city>/*_leftImg8bit.png + gtFine/<split>/<city>/*_gtFine_labelTrainIds.png
# (or *_labelIds.png, mapped with the official table: labelId -> trainId, others ignored) ----------------------

# The official label table (cityscapesScripts, helpers/labels.py): (name, labelId, trainId); trainId 255 = not
# evaluated. 'license plate' (id -1) never appears in label images. Train ids 0..18 follow the class order of
# DATASETS["cityscapes"].
CITYSCAPES_LABELS: Tuple[Tuple[str, int, int], ...] = (
    ("unlabeled", 0, 255), ("ego vehicle", 1, 255), ("rectification border", 2, 255), ("out of roi", 3, 255),
    ("static", 4, 255), ("dynamic", 5, 255), ("ground", 6, 255), ("road", 7, 0), ("sidewalk", 8, 1),
    ("parking", 9, 255), ("rail track", 10, 255), ("building", 11, 2), ("wall", 12, 3), ("fence", 13, 4),
    ("guard rail", 14, 255), ("bridge", 15, 255), ("tunnel", 16, 255), ("pole", 17, 5), ("polegroup", 18, 255),
    ("traffic light", 19, 6), ("traffic sign", 20, 7), ("vegetation", 21, 8), ("terrain", 22, 9), ("sky", 23, 10),
    ("person", 24, 11), ("rider", 25, 12), ("car", 26, 13), ("truck", 27, 14), ("bus", 28, 15),
    ("caravan", 29, 255), ("trailer", 30, 255), ("train", 31, 16), ("motorcycle", 32, 17), ("bicycle", 33, 18),
)
CITYSCAPES_ID_TO_TRAINID: Dict[int, int] = {i: t for _, i, t in CITYSCAPES_LABELS if t != IGNORE_INDEX}


def cityscapes(root: Path, split: str) -> SegDataset:
    images = _require_dir(root / "leftImg8bit" / split,
                          f"Cityscapes split {split!r} (expected leftImg8bit/{split}/<city>/; splits here: "
                          f"{', '.join(sorted(p.name for p in (root / 'leftImg8bit').glob('*') if p.is_dir())) or 'none'})")
    gt = _require_dir(root / "gtFine" / split, f"Cityscapes labels of split {split!r} (expected gtFine/{split}/<city>/)")
    files = sorted(images.glob("*/*_leftImg8bit.png"))
    base = [(f, gt / f.parent.name / f.name.replace("_leftImg8bit.png", "_gtFine_")) for f in files]
    if base and Path(f"{base[0][1]}labelTrainIds.png").is_file():
        items = [(f, Path(f"{g}labelTrainIds.png")) for f, g in base]
        label_map = identity_map(DATASETS["cityscapes"].num_classes)
    else:
        items = [(f, Path(f"{g}labelIds.png")) for f, g in base]
        label_map = lut_map(CITYSCAPES_ID_TO_TRAINID)
    return SegDataset("cityscapes", root, split, _existing(items, f"Cityscapes split {split!r}"), label_map)


# --- Pascal VOC 2012 / SBD-aug: JPEGImages/, SegmentationClass[Aug]/, ImageSets/Segmentation/<split>.txt -------

def voc_colormap() -> np.ndarray:
    """The 256-entry VOC colour map (RGB) of the palette PNGs in SegmentationClass/ (index 255 = boundary)."""
    from ..deploy import fallback_colour  # the bit-interleaved VOC colour map, written once

    return np.array([fallback_colour(i) for i in range(256)], np.uint8)


def voc_label_map(num_classes: int) -> LabelMap:
    """VOC labels: class ids 0..20, 255 = boundary/void. SegmentationClassAug holds grey PNGs of the ids;
    SegmentationClass holds palette PNGs, which OpenCV expands to colour: decoded through the VOC colour map."""
    ids = identity_map(num_classes)
    colours = voc_colormap().astype(np.int64)
    keys = (colours[:, 0] << 16) | (colours[:, 1] << 8) | colours[:, 2]
    order = np.argsort(keys)
    sorted_keys, index_of = keys[order], order.astype(np.uint8)

    def decode(raw: np.ndarray) -> np.ndarray:
        if raw.ndim == 2 or raw.shape[2] == 1:
            return ids(raw)
        if raw.dtype != np.uint8 or raw.shape[2] not in (3, 4):
            raise ValueError(f"is a {raw.shape[2]}-channel {raw.dtype} image; expected class ids or a VOC palette PNG")
        bgr = raw[..., :3].astype(np.int64)
        key = (bgr[..., 2] << 16) | (bgr[..., 1] << 8) | bgr[..., 0]
        pos = np.clip(np.searchsorted(sorted_keys, key), 0, len(sorted_keys) - 1)
        bad = sorted_keys[pos] != key
        if bad.any():
            b, g, r = raw[bad][0][:3]
            raise ValueError(f"has colour RGB ({r}, {g}, {b}), which is not in the VOC colour map; expected a VOC "
                             "palette PNG or a single-channel PNG of class ids")
        return ids(index_of[pos])

    return decode


def voc(root: Path, split: str) -> SegDataset:
    if (root / "VOC2012").is_dir():
        root = root / "VOC2012"
    elif (root / "VOCdevkit" / "VOC2012").is_dir():
        root = root / "VOCdevkit" / "VOC2012"
    lists = root / "ImageSets" / "Segmentation"
    listing = lists / f"{split}.txt"
    if not listing.is_file():
        raise DatasetError(f"VOC split list {listing} does not exist (lists here: {_splits(lists, '*.txt')}; "
                           "'trainaug' needs the SBD-aug list and SegmentationClassAug/)")
    labels = root / ("SegmentationClassAug" if split == "trainaug" else "SegmentationClass")
    if split != "trainaug" and not labels.is_dir():
        labels = root / "SegmentationClassAug"
    names = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
    items = [(root / "JPEGImages" / f"{n}.jpg", labels / f"{n}.png") for n in names]
    return SegDataset("voc", root, split, _existing(items, f"VOC split {split!r}"),
                      voc_label_map(DATASETS["voc"].num_classes))


# --- ADE20k: ADEChallengeData2016/images|annotations/{training,validation}; label 0 = ignore, k -> k-1 ---------

ADE20K_FOLDERS = {"train": "training", "val": "validation"}


def ade20k(root: Path, split: str) -> SegDataset:
    if (root / "ADEChallengeData2016").is_dir():
        root = root / "ADEChallengeData2016"
    folder = ADE20K_FOLDERS.get(split, split)
    images = _require_dir(root / "images" / folder, f"ADE20k split {split!r} (splits: train, val)")
    annots = _require_dir(root / "annotations" / folder, f"ADE20k labels of split {split!r}")
    items = [(f, annots / f"{f.stem}.png") for f in sorted(images.glob("*.jpg"))]
    num_classes = DATASETS["ade20k"].num_classes
    return SegDataset("ade20k", root, split, _existing(items, f"ADE20k split {split!r}"),
                      lut_map({k: k - 1 for k in range(1, num_classes + 1)}))


LAYOUTS: Dict[str, Callable[[Path, str], SegDataset]] = {
    "camvid": camvid, "cityscapes": cityscapes, "voc": voc, "ade20k": ade20k,
}


def open_dataset(kind: str, root: str | Path, split: str) -> SegDataset:
    """The ``split`` of dataset ``kind`` (``camvid``, ``cityscapes``, ``voc``, ``ade20k``) under ``root``."""
    if kind not in LAYOUTS:
        raise DatasetError(f"unknown dataset layout {kind!r}; known: {sorted(LAYOUTS)}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist (pass the {kind} folder with --data)")
    return LAYOUTS[kind](root, split)


def dataset_for_spec(spec: ModelSpec, root: str | Path, split: Optional[str] = None) -> SegDataset:
    """The dataset a zoo entry was trained on, at ``root`` (default split: the entry's eval split)."""
    return open_dataset(spec.dataset, root, split or spec.eval_split)
