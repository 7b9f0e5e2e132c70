"""Dataset layouts. Each reader turns a root + split into (image path, label path) pairs and a
label mapping to train ids with 255 = ignore."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..preprocess import read_image
from ..zoo import IGNORE_INDEX, ModelSpec

LabelMap = Callable[[np.ndarray], np.ndarray]


@dataclass
class Sample:
    image: np.ndarray  # BGR uint8, HxWx3
    label: np.ndarray  # uint8 HxW, 255 = ignore
    name: str


class SegDataset(Sequence[Sample]):
    """A list of (image, label) files plus the mapping of raw label values to train ids."""

    def __init__(self, kind: str, root: Path, split: str, items: List[Tuple[Path, Path]], label_map: LabelMap) -> None:
        if not items:
            raise FileNotFoundError(f"{kind} split {split!r} under {root} has no images")
        self.kind, self.root, self.split = kind, root, split
        self.items = items
        self.label_map = label_map

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Sample:  # type: ignore[override]
        image_path, label_path = self.items[i]
        image = read_image(str(image_path))
        raw = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise OSError(f"cannot read label map {label_path}: missing, unreadable or not an image")
        if raw.ndim == 3:
            raise ValueError(f"label map {label_path} has {raw.shape[2]} channels; expected a single-channel PNG of class ids")
        if raw.shape[:2] != image.shape[:2]:
            raise ValueError(
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
        raise FileNotFoundError(f"{what}: {path} is not a directory")
    return path


# --- CamVid, SegNet layout: <split>/ + <split>annot/ (+ <split>.txt with foreign absolute paths) --------------

CAMVID_CLASSES = 11  # label 11 = void


def camvid(root: Path, split: str) -> SegDataset:
    images = _require_dir(root / split, f"CamVid split {split!r} (expected SegNet layout train/ trainannot/ val/ ...)")
    annots = _require_dir(root / f"{split}annot", f"CamVid labels of split {split!r}")
    listing = root / f"{split}.txt"
    if listing.is_file():
        # The list files hold absolute paths from another machine: resolve them by file name.
        names = [Path(line.split()[0]).name for line in listing.read_text().splitlines() if line.strip()]
    else:
        names = sorted(p.name for p in images.iterdir() if p.suffix.lower() == ".png")
    items = [(images / n, annots / n) for n in names]
    missing = [str(p) for pair in items for p in pair if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"CamVid split {split!r}: {len(missing)} listed files are missing, e.g. {missing[0]}")
    return SegDataset("camvid", root, split, items, lut_map({i: i for i in range(CAMVID_CLASSES)}))


LAYOUTS: Dict[str, Callable[[Path, str], SegDataset]] = {"camvid": camvid}


def open_dataset(kind: str, root: "str | Path", split: str) -> SegDataset:
    """The ``split`` of dataset ``kind`` (``camvid``, ``cityscapes``, ``voc``, ``ade20k``) under ``root``."""
    if kind not in LAYOUTS:
        raise KeyError(f"unknown dataset layout {kind!r}; known: {sorted(LAYOUTS)}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} does not exist")
    return LAYOUTS[kind](root, split)


def dataset_for_spec(spec: ModelSpec, root: "str | Path", split: Optional[str] = None) -> SegDataset:
    """The dataset a zoo entry was trained on, at ``root`` (default split: the entry's eval split)."""
    return open_dataset(spec.dataset, root, split or spec.eval_split)
