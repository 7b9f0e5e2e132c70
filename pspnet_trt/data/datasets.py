"""Dataset layouts. Each reader turns a root + split into (image path, label path) pairs and a
label mapping from the raw label values on disk to train ids, with 255 = ignore.

Besides the four zoo layouts there is the folder data set (:func:`folder`), recognised by its
``classes.json``: ``DIR/classes.json``, ``DIR/images/<split>/<stem>.{jpg,jpeg,png,bmp}``,
``DIR/masks/<split>/<stem>.png``. Every layout refuses a label value that is neither a class nor void,
naming the file, the value and the class count (a mask made for another class list is never silently ignored).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..errors import UserError
from ..preprocess import read_image
from ..zoo import DATASETS, IGNORE_INDEX, DatasetInfo, ModelSpec

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


def read_raw_label(path: Path) -> Optional[np.ndarray]:
    """A label file as ``cv2.imread(IMREAD_UNCHANGED)`` returns it (palette PNGs expanded to colour); None when
    it cannot be read."""
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def read_dataset_image(path: Path) -> np.ndarray:
    """:func:`~pspnet_trt.preprocess.read_image`, and a JPEG cut short is refused too (OpenCV decodes what is there
    and fills the rest with grey); an OSError naming the file otherwise."""
    image = read_image(str(path))
    if path.suffix.lower() in (".jpg", ".jpeg"):
        with open(path, "rb") as f:  # some cameras append data after the image: look in the last 64 KiB
            f.seek(max(path.stat().st_size - (1 << 16), 0))
            tail = f.read()
        if b"\xff\xd9" not in tail:  # every complete JPEG has its end-of-image marker
            raise OSError(f"cannot read image {path}: the JPEG is truncated (no end-of-image marker)")
    return image


class SegDataset(Sequence[Sample]):
    """A list of (image, label) files plus the mapping of raw label values to train ids.

    ``info``: the data set's name, class names and palette (default: the zoo's for ``kind``); ``read_raw``:
    how a label file is read before ``label_map`` (default :func:`read_raw_label`)."""

    def __init__(self, kind: str, root: Path, split: str, items: List[Tuple[Path, Path]], label_map: LabelMap,
                 info: Optional[DatasetInfo] = None,
                 read_raw: Callable[[Path], Optional[np.ndarray]] = read_raw_label) -> None:
        if not items:
            raise DatasetError(f"{kind} split {split!r} under {root} has no images")
        self.kind, self.root, self.split = kind, root, split
        self.items = items
        self.label_map = label_map
        self.info = info or DATASETS[kind]
        self.read_raw = read_raw

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Sample:  # type: ignore[override]
        image_path, label_path = self.items[i]
        try:
            image = read_dataset_image(image_path)
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
        raw = self.read_raw(label_path)
        if raw is None:
            raise DatasetError(f"cannot read label map {label_path}: missing, unreadable or not an image")
        try:
            return self.label_map(raw)
        except ValueError as e:
            raise DatasetError(f"label map {label_path}: {e}") from None

    def subset(self, indices: Sequence[int]) -> SegDataset:
        return SegDataset(self.kind, self.root, self.split, [self.items[i] for i in indices], self.label_map,
                          self.info, self.read_raw)

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


def lut_map(table: Dict[int, int], num_classes: int, void: Sequence[int] = ()) -> LabelMap:
    """Label mapping through a 256-entry lookup table: ``table`` maps raw values to class ids, the ``void`` values
    and :data:`IGNORE_INDEX` become ignore (255); any other value is refused (ValueError naming it and the class
    count): a mask made for another class list is an error, not silently ignored pixels."""
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    known = np.zeros(256, bool)
    for k, v in table.items():
        lut[k], known[k] = v, True
    known[[*void, IGNORE_INDEX]] = True
    ignored = ", ".join(str(v) for v in sorted({*void, IGNORE_INDEX}))

    def decode(raw: np.ndarray) -> np.ndarray:
        raw = _single_channel(raw)
        bad = ~known[raw]
        if bad.any():
            raise ValueError(f"holds the value {int(raw[bad][0])}, which is no class of this {num_classes}-class "
                             f"data set (labels here: {_labels_shown(table)}; ignored: {ignored}): fix the mask, or "
                             "train and validate with the class list it was made for")
        return lut[raw]

    return decode


def _labels_shown(table: Dict[int, int]) -> str:
    keys = sorted(table)
    contiguous = keys == list(range(keys[0], keys[-1] + 1)) if keys else False
    return f"{keys[0]}..{keys[-1]}" if contiguous and len(keys) > 2 else ", ".join(map(str, keys))


def identity_map(num_classes: int, void: Sequence[int] = ()) -> LabelMap:
    """Class ids 0..num_classes-1 kept; the ``void`` values and 255 become ignore; any other value is refused."""
    return lut_map({i: i for i in range(num_classes)}, num_classes, void)


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
    num_classes = DATASETS["camvid"].num_classes
    return SegDataset("camvid", root, split, _existing(items, f"CamVid split {split!r}"),
                      identity_map(num_classes, void=(num_classes,)))


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
CITYSCAPES_VOID_IDS: Tuple[int, ...] = tuple(i for _, i, t in CITYSCAPES_LABELS if t == IGNORE_INDEX and i >= 0)


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
        label_map = lut_map(CITYSCAPES_ID_TO_TRAINID, DATASETS["cityscapes"].num_classes, CITYSCAPES_VOID_IDS)
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
    lookup = colour_lookup(voc_colormap())

    def decode(raw: np.ndarray) -> np.ndarray:
        if raw.ndim == 2 or raw.shape[2] == 1:
            return ids(raw)
        if raw.dtype != np.uint8 or raw.shape[2] not in (3, 4):
            raise ValueError(f"is a {raw.shape[2]}-channel {raw.dtype} image; expected class ids or a VOC palette PNG")
        index, unknown = lookup(raw)
        if unknown is not None:
            raise ValueError(f"has colour RGB {unknown}, which is not in the VOC colour map; expected a VOC "
                             "palette PNG or a single-channel PNG of class ids")
        return ids(index.astype(np.uint8))

    return decode


def colour_lookup(colours_rgb: np.ndarray) -> Callable[[np.ndarray], Tuple[np.ndarray, Optional[Tuple[int, int, int]]]]:
    """Colour -> index through a table of RGB colours (the first index of a colour wins): called on a BGR(A)
    uint8 image it gives (HxW int64 indices, None), or (..., the first colour not in the table as RGB)."""
    colours = np.asarray(colours_rgb, np.int64).reshape(-1, 3)
    keys = (colours[:, 0] << 16) | (colours[:, 1] << 8) | colours[:, 2]
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]

    def lookup(bgr: np.ndarray) -> Tuple[np.ndarray, Optional[Tuple[int, int, int]]]:
        c = bgr[..., :3].astype(np.int64)
        key = (c[..., 2] << 16) | (c[..., 1] << 8) | c[..., 0]
        pos = np.clip(np.searchsorted(sorted_keys, key), 0, len(sorted_keys) - 1)
        bad = sorted_keys[pos] != key
        if bad.any():
            b, g, r = (int(v) for v in bgr[bad][0][:3])
            return pos, (r, g, b)
        return order[pos], None

    return lookup


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
                      lut_map({k: k - 1 for k in range(1, num_classes + 1)}, num_classes, void=(0,)))


# --- The folder data set: classes.json, images/<split>/, masks/<split>/ (your own data) -----------------------

CLASSES_FILE = "classes.json"
FOLDER_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True)
class FolderClasses:
    """A folder data set's ``classes.json``: names (and the data set's name), palette, and the void of its masks."""

    info: DatasetInfo
    palette_given: bool  # False: classes.json has no palette (the colours are the fallback map's; no RGB masks)
    ignore_index: int = IGNORE_INDEX  # the mask value that means "not labelled"
    ignore_color: Optional[Tuple[int, int, int]] = None  # RGB masks: the colour that means "not labelled"


def is_folder_dataset(root: str | Path) -> bool:
    """True when ``root`` is a folder data set (it holds ``classes.json``)."""
    return (Path(root) / CLASSES_FILE).is_file()


def _colour(value: object, what: str, where: Path) -> Tuple[int, int, int]:
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value)):
        raise DatasetError(f"{where}: {what} is {json.dumps(value)}; expected [R, G, B] with values 0..255")
    return int(value[0]), int(value[1]), int(value[2])


def read_classes(root: str | Path) -> FolderClasses:
    """``root/classes.json``, checked: a one-line :class:`DatasetError` naming the file and the field otherwise."""
    from ..deploy import fallback_colour

    path = Path(root) / CLASSES_FILE
    try:
        d = json.loads(path.read_text())
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path} is not valid JSON ({e}); expected "
                           '{"classes": ["name", ...], "palette": [[R, G, B], ...]}') from None
    if not isinstance(d, dict):
        raise DatasetError(f'{path}: expected a JSON object such as {{"classes": ["road", "sky"]}}')
    unknown = sorted(set(d) - {"name", "classes", "palette", "ignore_index", "ignore_color"})
    if unknown:
        raise DatasetError(f"{path}: unknown key(s) {', '.join(unknown)}; known: name, classes, palette, "
                           "ignore_index, ignore_color")
    names = d.get("classes")
    if (not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names)):
        raise DatasetError(f'{path}: "classes" must be a non-empty list of class names in id order, e.g. '
                           '["road", "sky"]')
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise DatasetError(f'{path}: class name(s) {", ".join(twice)} appear more than once in "classes"')
    if len(names) > 255:
        raise DatasetError(f"{path}: {len(names)} classes; at most 255 fit in 8-bit masks beside the ignore value")
    ignore = d.get("ignore_index", IGNORE_INDEX)
    if not isinstance(ignore, int) or isinstance(ignore, bool) or not len(names) <= ignore <= 255:
        raise DatasetError(f'{path}: "ignore_index" is {json.dumps(ignore)}; expected a mask value from '
                           f"{len(names)} to 255 (0..{len(names) - 1} are the class ids)")
    if "palette" in d:
        if not isinstance(d["palette"], list) or len(d["palette"]) != len(names):
            raise DatasetError(f'{path}: "palette" must hold one [R, G, B] per class ({len(names)}), '
                               f"found {len(d['palette']) if isinstance(d['palette'], list) else json.dumps(d['palette'])}")
        palette = tuple(_colour(c, f"the colour of {n!r}", path) for c, n in zip(d["palette"], names))
        twice = sorted({c for c in palette if palette.count(c) > 1})
        if twice:
            raise DatasetError(f'{path}: colour {list(twice[0])} is given to more than one class in "palette"')
    else:
        palette = tuple(fallback_colour(i) for i in range(len(names)))
    ignore_color = _colour(d["ignore_color"], '"ignore_color"', path) if d.get("ignore_color") is not None else None
    if ignore_color is not None and ignore_color in palette:
        raise DatasetError(f'{path}: "ignore_color" {list(ignore_color)} is also the colour of class '
                           f"{names[palette.index(ignore_color)]!r}")
    name = d.get("name", Path(os.path.abspath(root)).name)
    if not isinstance(name, str) or not name.strip():
        raise DatasetError(f'{path}: "name" must be a non-empty string')
    return FolderClasses(DatasetInfo(name, tuple(names), palette), "palette" in d, ignore, ignore_color)


def folder_label_map(classes: FolderClasses) -> LabelMap:
    """Masks of a folder data set: single-channel class ids (``ignore_index`` = not labelled), palette PNGs read as
    their indices (see :func:`read_folder_mask`), or RGB(A) PNGs mapped through the palette (``ignore_color`` = not
    labelled). Any other value or colour is refused (ValueError naming it)."""
    n = classes.info.num_classes
    ids = lut_map({i: i for i in range(n)}, n, void=(classes.ignore_index,))
    colours = list(classes.info.palette) + ([classes.ignore_color] if classes.ignore_color else [])
    lookup = colour_lookup(np.array(colours))
    lut = np.array([*range(n), IGNORE_INDEX], np.uint8)

    def decode(raw: np.ndarray) -> np.ndarray:
        if raw.ndim == 2 or raw.shape[2] == 1:
            return ids(raw)
        if raw.dtype != np.uint8 or raw.shape[2] not in (3, 4):
            raise ValueError(f"is a {raw.shape[2]}-channel {raw.dtype} image; expected a single-channel PNG of class "
                             "ids, a palette PNG or an 8-bit RGB PNG in the classes' colours")
        if not classes.palette_given:
            raise ValueError(f"is an RGB image, but {CLASSES_FILE} has no \"palette\" to map its colours to classes: "
                             "add one, or save the masks as single-channel PNGs of class ids")
        index, unknown = lookup(raw)
        if unknown is not None:
            ignore = f", nor the ignore_color {list(classes.ignore_color)}" if classes.ignore_color else ""
            raise ValueError(f"has colour RGB {unknown}, which is not in the palette of {CLASSES_FILE}{ignore}: fix "
                             "the mask, or add the colour to classes.json (\"palette\", or \"ignore_color\" for "
                             "unlabelled pixels)")
        return lut[np.minimum(index, n)]

    return decode


def _png_colour_type(path: Path) -> Optional[int]:
    """The colour type in a PNG file's header (3 = palette), or None for a file that is not a PNG."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError:
        return None
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return head[25]


def read_folder_mask(path: Path) -> Optional[np.ndarray]:
    """A folder data set's mask: a palette (P-mode) PNG as its indices (with Pillow; OpenCV would expand it to
    colour), anything else as :func:`read_raw_label` reads it. None when it cannot be read."""
    if _png_colour_type(path) != 3:
        return read_raw_label(path)
    try:
        from PIL import Image
    except ImportError:
        raise DatasetError(f"{path} is a palette PNG: reading its indices needs Pillow (pip install pillow), or save "
                           "the masks as single-channel PNGs of class ids") from None
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("P") if im.mode != "P" else im).copy()
    except (OSError, ValueError, SyntaxError):
        return None


def _files(folder: Path, suffixes: Tuple[str, ...]) -> Dict[str, Path]:
    """Stem -> file of the ``suffixes`` files in ``folder`` (hidden files skipped); two files of one stem refused."""
    out: Dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.name.startswith(".") or f.suffix.lower() not in suffixes or not f.is_file():
            continue
        if f.stem in out:
            raise DatasetError(f"{out[f.stem]} and {f.name} share the name {f.stem!r}: keep one image per name")
        out[f.stem] = f
    return out


def folder_splits(root: str | Path) -> List[str]:
    """The splits of a folder data set: the folders under ``images/``."""
    images = Path(root) / "images"
    return sorted(p.name for p in images.iterdir() if p.is_dir() and not p.name.startswith(".")) if images.is_dir() else []


def folder(root: Path, split: str) -> SegDataset:
    """The folder data set at ``root`` (``classes.json``, ``images/<split>/``, ``masks/<split>/``): every image
    needs a mask of its stem (``.png``) and every mask an image; a missing split names the splits there."""
    classes = read_classes(root)
    images_dir, masks_dir = root / "images" / split, root / "masks" / split
    if not images_dir.is_dir():
        raise DatasetError(f"data set {root} has no split {split!r} (no folder images/{split}/; splits here: "
                           f"{', '.join(folder_splits(root)) or 'none'})")
    if not masks_dir.is_dir():
        raise DatasetError(f"data set {root}: split {split!r} has images/{split}/ but no masks/{split}/ folder")
    images, masks = _files(images_dir, FOLDER_IMAGE_SUFFIXES), _files(masks_dir, (".png",))
    lonely = [f for stem, f in images.items() if stem not in masks]
    if lonely:
        raise DatasetError(f"image {lonely[0]} has no mask {masks_dir / (lonely[0].stem + '.png')}"
                           + (f" ({len(lonely) - 1} more images have none)" if len(lonely) > 1 else "")
                           + ": add the masks, or remove the images")
    orphans = [f for stem, f in masks.items() if stem not in images]
    if orphans:
        raise DatasetError(f"mask {orphans[0]} has no image {orphans[0].stem}.* in {images_dir}"
                           + (f" ({len(orphans) - 1} more masks have none)" if len(orphans) > 1 else "")
                           + ": add the image, or remove the mask")
    items = [(f, masks[stem]) for stem, f in images.items()]
    return SegDataset(classes.info.name, root, split, items, folder_label_map(classes), classes.info,
                      read_folder_mask)


LAYOUTS: Dict[str, Callable[[Path, str], SegDataset]] = {
    "camvid": camvid, "cityscapes": cityscapes, "voc": voc, "ade20k": ade20k, "folder": folder,
}


def open_dataset(kind: str, root: str | Path, split: str) -> SegDataset:
    """The ``split`` of dataset ``kind`` (``camvid``, ``cityscapes``, ``voc``, ``ade20k``, ``folder``) under
    ``root``. A root holding ``classes.json`` is a folder data set whatever ``kind`` says."""
    if kind not in LAYOUTS:
        raise DatasetError(f"unknown dataset layout {kind!r}; known: {sorted(LAYOUTS)}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist (pass the {kind} folder with --data)")
    if is_folder_dataset(root):
        return folder(root, split)
    return LAYOUTS[kind](root, split)


def default_split(spec: ModelSpec, root: str | Path, purpose: str = "eval") -> str:
    """The split a run reads for ``purpose`` (``eval`` or ``train``): the zoo entry's for its own layout, ``val``
    and ``train`` for a folder data set."""
    if is_folder_dataset(root):
        return "val" if purpose == "eval" else "train"
    return spec.eval_split if purpose == "eval" else spec.train_split


def dataset_for_spec(spec: ModelSpec, root: str | Path, split: Optional[str] = None) -> SegDataset:
    """The dataset a zoo entry was trained on, at ``root`` (default split: the entry's eval split), or the folder
    data set at ``root`` (default split: ``val``)."""
    return open_dataset(spec.dataset, root, split or default_split(spec, root))


def check_classes(dataset: SegDataset, num_classes: int, class_names: Optional[Sequence[str]] = None) -> None:
    """Refuse a data set whose class count differs from the model's (``num_classes``): its masks would be read
    against another class list. ``class_names``: the model's, named in the message."""
    if dataset.num_classes != num_classes:
        names = f" ({', '.join(class_names[:8])}{', ...' if len(class_names) > 8 else ''})" if class_names else ""
        raise DatasetError(f"data set {dataset.root} has {dataset.num_classes} classes but the model predicts "
                           f"{num_classes}{names}: pass the checkpoint trained on this data set (--checkpoint), or "
                           "the data set the model was trained on")
