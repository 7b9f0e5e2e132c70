"""Dataset layouts on tiny generated trees (and the real CamVid when CAMVID_ROOT is set)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pspnet_trt.data import DatasetError, open_dataset
from pspnet_trt.data.datasets import CITYSCAPES_LABELS
from pspnet_trt.zoo import DATASETS

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "camvid"


def write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def image(h=20, w=30, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --- Cityscapes ---------------------------------------------------------------------------------------------

def test_cityscapes_official_table_matches_the_19_class_names():
    train = sorted((t, name) for name, _, t in CITYSCAPES_LABELS if t != 255)
    assert [t for t, _ in train] == list(range(19))
    assert [n.replace(" ", "_") for _, n in train] == list(DATASETS["cityscapes"].class_names)
    assert [i for _, i, _ in CITYSCAPES_LABELS] == list(range(34))


def test_cityscapes_label_ids_are_mapped_to_train_ids(tmp_path):
    ids = np.tile(np.arange(34, dtype=np.uint8), (4, 1))  # every official id, one per column
    write(tmp_path / "leftImg8bit/val/aachen/aachen_000000_000019_leftImg8bit.png", image(4, 34))
    write(tmp_path / "gtFine/val/aachen/aachen_000000_000019_gtFine_labelIds.png", ids)
    ds = open_dataset("cityscapes", tmp_path, "val")
    row = ds[0].label[0]
    # written out independently of the table: road 7->0, sidewalk 8->1, building 11->2 ... bicycle 33->18
    expected = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
                27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
    assert list(row) == [expected.get(i, 255) for i in range(34)]
    assert ds[0].name == "aachen_000000_000019_leftImg8bit"
    # labelTrainIds, when present, are used as they are
    write(tmp_path / "gtFine/val/aachen/aachen_000000_000019_gtFine_labelTrainIds.png", np.full((4, 34), 3, np.uint8))
    assert (open_dataset("cityscapes", tmp_path, "val")[0].label == 3).all()
    with pytest.raises(DatasetError, match=r"split 'test'.*splits here: val"):
        open_dataset("cityscapes", tmp_path, "test")


# --- Pascal VOC / SBD-aug -----------------------------------------------------------------------------------

def voc_palette_png(path: Path, indices: np.ndarray) -> None:
    """A VOC-style palette PNG (as in SegmentationClass/), written with Pillow."""
    Image = pytest.importorskip("PIL.Image")
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    im = Image.fromarray(indices, mode="P")
    im.putpalette(palette)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def voc_tree(root: Path, split: str, names) -> None:
    (root / "ImageSets/Segmentation").mkdir(parents=True, exist_ok=True)
    (root / f"ImageSets/Segmentation/{split}.txt").write_text("".join(f"{n}\n" for n in names))
    for n in names:
        write(root / "JPEGImages" / f"{n}.jpg", image(20, 30))


def test_voc_palette_pngs_are_decoded_to_class_ids(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    voc_tree(root, "val", ["2007_000032"])
    ids = np.array([[0, 1, 15, 20, 255, 7]], np.uint8).repeat(20, 0).repeat(5, 1)  # 20x30
    voc_palette_png(root / "SegmentationClass/2007_000032.png", ids)
    assert cv2.imread(str(root / "SegmentationClass/2007_000032.png"), cv2.IMREAD_UNCHANGED).ndim == 3  # cv2: colour
    for given in (tmp_path, tmp_path / "VOCdevkit", root):  # any of the usual roots
        ds = open_dataset("voc", given, "val")
        assert np.array_equal(ds[0].label, ids)
    # a colour outside the VOC map: refused with the file named
    bad = cv2.imread(str(root / "SegmentationClass/2007_000032.png"))
    bad[0, 0] = (1, 2, 3)
    write(root / "SegmentationClass/2007_000032.png", bad)
    with pytest.raises(DatasetError, match=r"2007_000032\.png.*RGB \(3, 2, 1\).*not in the VOC colour map"):
        open_dataset("voc", tmp_path, "val")[0]


def test_voc_trainaug_reads_grey_sbd_labels_and_names_missing_lists(tmp_path):
    root = tmp_path / "VOC2012"
    voc_tree(root, "trainaug", ["2008_000002", "2008_000003"])
    for n in ("2008_000002", "2008_000003"):
        write(root / f"SegmentationClassAug/{n}.png", np.array([[0, 15, 255, 21]], np.uint8).repeat(20, 0).repeat(8, 1)[:, :30])
    ds = open_dataset("voc", tmp_path, "trainaug")
    assert len(ds) == 2
    # 21 is no VOC class: refused, naming the file, the value and the class count (it was silently ignored)
    with pytest.raises(DatasetError, match=r"2008_000003\.png: holds the value 21, which is no class of this 21-class"):
        ds[1]
    with pytest.raises(DatasetError, match=r"val\.txt does not exist \(lists here: trainaug"):
        open_dataset("voc", tmp_path, "val")
    (root / "ImageSets/Segmentation/val.txt").write_text("2008_000099\n")
    with pytest.raises(DatasetError, match=r"2 listed files are missing, e\.g\. .*2008_000099\.jpg"):
        open_dataset("voc", tmp_path, "val")


# --- ADE20k -------------------------------------------------------------------------------------------------

def test_ade20k_shifts_labels_and_ignores_zero(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    write(root / "images/validation/ADE_val_00000001.jpg", image())
    write(root / "annotations/validation/ADE_val_00000001.png", np.array([[0, 1, 2, 150]], np.uint8).repeat(20, 0).repeat(8, 1)[:, :30])
    write(root / "images/training/ADE_train_00000001.jpg", image())
    write(root / "annotations/training/ADE_train_00000001.png", np.full((20, 30), 151, np.uint8))
    label = open_dataset("ade20k", tmp_path, "val")[0].label
    assert list(label[0, ::8]) == [255, 0, 1, 149]
    with pytest.raises(DatasetError, match=r"ADE_train_00000001\.png: holds the value 151, .*150-class"):
        open_dataset("ade20k", root, "train")[0]  # 151 is not an ADE class: refused (it was silently ignored)


# --- CamVid (SegNet layout) and errors ----------------------------------------------------------------------

def test_camvid_sample(tmp_path):
    ds = open_dataset("camvid", SAMPLE, "test")
    s = ds[0]
    assert s.image.shape == (360, 480, 3) and s.label.shape == (360, 480) and s.label.dtype == np.uint8
    raw = cv2.imread(str(ds.items[0][1]), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(s.label, np.where(raw < 11, raw, 255))  # 11 = void -> ignore


def test_camvid_list_files_with_foreign_paths_resolve_by_file_name(tmp_path):
    for n in ("a", "b"):
        write(tmp_path / f"val/{n}.png", image())
        write(tmp_path / f"valannot/{n}.png", np.full((20, 30), 3, np.uint8))
    (tmp_path / "val.txt").write_text("/SegNet/CamVid/val/b.png /SegNet/CamVid/valannot/b.png\n")
    ds = open_dataset("camvid", tmp_path, "val")
    assert [s.name for s in ds] == ["b"]  # the list decides, not the folder
    (tmp_path / "val.txt").unlink()
    assert len(open_dataset("camvid", tmp_path, "val")) == 2


def test_bad_files_are_named(tmp_path):
    write(tmp_path / "test/a.png", image())
    write(tmp_path / "testannot/a.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(DatasetError, match=r"label map .*testannot/a\.png is 10x10 but its image .*a\.png is 30x20"):
        open_dataset("camvid", tmp_path, "test")[0]
    (tmp_path / "test/b.png").write_bytes(b"not an image")
    write(tmp_path / "testannot/b.png", np.zeros((20, 30), np.uint8))
    with pytest.raises(DatasetError, match=r"cannot read image .*test/b\.png"):
        open_dataset("camvid", tmp_path, "test")[1]
    write(tmp_path / "test/c.png", image())
    write(tmp_path / "testannot/c.png", image())  # colour, not class ids
    with pytest.raises(DatasetError, match=r"testannot/c\.png: has 3 channels"):
        open_dataset("camvid", tmp_path, "test")[2]
    write(tmp_path / "test/d.png", image())
    write(tmp_path / "testannot/d.png", np.full((20, 30), 4000, np.uint16))
    with pytest.raises(DatasetError, match=r"testannot/d\.png: holds uint16 values outside 0\.\.255"):
        open_dataset("camvid", tmp_path, "test")[3]
    write(tmp_path / "testannot/d.png", np.full((20, 30), 4, np.uint16))  # 16-bit but in range: fine
    assert (open_dataset("camvid", tmp_path, "test")[3].label == 4).all()
    with pytest.raises(DatasetError, match=r"split 'val'.*splits here: test"):
        open_dataset("camvid", tmp_path, "val")
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset("camvid", tmp_path / "nope", "val")
    with pytest.raises(DatasetError, match="unknown dataset layout"):
        open_dataset("kitti", tmp_path, "val")


def test_real_camvid_splits(camvid_root):
    for split, n in (("train", 367), ("val", 101), ("test", 233)):
        assert len(open_dataset("camvid", camvid_root, split)) == n
    s = open_dataset("camvid", camvid_root, "val")[0]
    assert s.image.shape == (360, 480, 3) and s.label.shape == (360, 480)
    assert s.label.dtype == np.uint8 and (s.label == 255).any() and s.label[s.label != 255].max() < 11
