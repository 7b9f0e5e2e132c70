"""Dataset layouts on tiny generated trees (and the real CamVid when CAMVID_ROOT is set)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pspnet_trt.data import DatasetError, open_dataset
from pspnet_trt.data.datasets import CITYSCAPES_ID_TO_TRAINID


def write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def image(h=20, w=30, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_cityscapes_label_ids_are_mapped_to_train_ids(tmp_path):
    ids = np.array([[7, 8, 26, 0, 33, 255]], np.uint8).repeat(20, 0)[:, :6]
    write(tmp_path / "leftImg8bit/val/aachen/a_000000_000019_leftImg8bit.png", image(20, 6))
    write(tmp_path / "gtFine/val/aachen/a_000000_000019_gtFine_labelIds.png", ids)
    ds = open_dataset("cityscapes", tmp_path, "val")
    assert list(ds[0].label[0]) == [0, 1, 13, 255, 18, 255]
    assert len(CITYSCAPES_ID_TO_TRAINID) == 19
    # prefer labelTrainIds when present
    write(tmp_path / "gtFine/val/aachen/a_000000_000019_gtFine_labelTrainIds.png", np.full((20, 6), 3, np.uint8))
    assert (open_dataset("cityscapes", tmp_path, "val")[0].label == 3).all()


def test_voc_split_list_and_boundary_ignore(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    (root / "ImageSets/Segmentation").mkdir(parents=True)
    (root / "ImageSets/Segmentation/val.txt").write_text("2007_000032\n")
    write(root / "JPEGImages/2007_000032.jpg", image())
    write(root / "SegmentationClass/2007_000032.png", np.array([[0, 15, 255, 21]], np.uint8).repeat(20, 0).repeat(8, 1)[:, :30])
    ds = open_dataset("voc", tmp_path / "VOCdevkit", "val")
    assert set(np.unique(ds[0].label)) == {0, 15, 255}  # 21 is out of range -> ignored
    with pytest.raises(DatasetError, match="trainaug"):
        open_dataset("voc", tmp_path / "VOCdevkit", "train")


def test_ade20k_shifts_labels_and_ignores_zero(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    write(root / "images/validation/ADE_val_00000001.jpg", image())
    write(root / "annotations/validation/ADE_val_00000001.png", np.array([[0, 1, 150]], np.uint8).repeat(20, 0).repeat(10, 1))
    ds = open_dataset("ade20k", tmp_path, "val")
    assert list(np.unique(ds[0].label)) == [0, 149, 255]


def test_camvid_sample_and_bad_inputs(tmp_path):
    sample = Path(__file__).resolve().parents[1] / "samples" / "camvid"
    ds = open_dataset("camvid", sample, "test")
    s = ds[0]
    assert s.image.shape == (360, 480, 3) and s.label.shape == (360, 480) and s.label.max() <= 255
    assert set(np.unique(s.label)) <= set(range(11)) | {255}
    write(tmp_path / "test/a.png", image())
    write(tmp_path / "testannot/a.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(DatasetError, match="does not belong together"):
        open_dataset("camvid", tmp_path, "test")[0]
    (tmp_path / "test/b.png").write_bytes(b"not an image")
    write(tmp_path / "testannot/b.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(DatasetError, match="cannot read image"):
        open_dataset("camvid", tmp_path, "test")[1]
    with pytest.raises(DatasetError, match="not a directory"):
        open_dataset("camvid", tmp_path, "val")


def test_real_camvid_lists_resolve_by_file_name(camvid_root):
    for split, n in (("train", 367), ("val", 101), ("test", 233)):
        assert len(open_dataset("camvid", camvid_root, split)) == n
    s = open_dataset("camvid", camvid_root, "val")[0]
    assert s.label.dtype == np.uint8 and (s.label == 255).any() and s.label[s.label != 255].max() < 11
