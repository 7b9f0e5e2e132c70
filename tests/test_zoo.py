from __future__ import annotations

import subprocess
import sys

import pytest

from pspnet_trt.zoo import IMAGENET_MEAN_255, IMAGENET_STD_255, ZOO, get_spec


def test_zoo_has_15_published_entries_and_the_two_camvid_models():
    published = [s for s in ZOO.values() if s.published_miou is not None]
    assert len(published) == 15 and len(ZOO) == 17
    assert {(s.backbone, s.output_stride, s.dataset) for s in published} == {
        (f"resnet{d}", o, ds) for d in (50, 101) for o in (8, 16) for ds in ("voc", "ade20k", "cityscapes")
    } | {("mobilenetv2", 8, ds) for ds in ("voc", "ade20k", "cityscapes")}
    assert get_spec("r50_os8_cityscapes").published_miou == 79.05
    assert get_spec("r101_os8_ade20k").published_miou == 44.55


@pytest.mark.parametrize("name,classes,crop", [
    ("r50_os8_voc", 21, (512, 512)), ("r101_os16_ade20k", 150, (512, 512)),
    ("r50_os16_cityscapes", 19, (512, 1024)), ("r18_os8_camvid", 11, (360, 480)),
])
def test_entry_fields(name, classes, crop):
    s = get_spec(name)
    assert s.num_classes == classes == len(s.palette) == len(s.class_names)
    assert s.crop_size == crop
    assert s.normalization.mean == IMAGENET_MEAN_255 == (123.675, 116.28, 103.53)
    assert s.normalization.std == IMAGENET_STD_255 == (58.395, 57.12, 57.375)
    assert s.normalization.channel_order == "rgb"
    if s.config:
        assert s.url.endswith(f"/ssseg_pspnet/{s.config}.pth")  # the ResNets' release folder


def test_cityscapes_schedule_and_eval_resize():
    s = get_spec("r101_os8_cityscapes")
    assert (s.batch_size, s.epochs, s.lr) == (8, 220, 0.01)
    assert s.eval_resize == (2048, 1024)
    assert get_spec("r50_os8_voc").train_split == "trainaug"


def test_unknown_name_suggests_close_matches():
    with pytest.raises(KeyError, match="r50_os8_cityscapes"):
        get_spec("r50_os8_cityscape")


def test_cli_unknown_name_is_one_line_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pspnet_trt", "export", "--model", "r50_os8_citiscapes",
                        "--out", str(tmp_path / "x.onnx")], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "pspnet-trt export: error: unknown zoo model 'r50_os8_citiscapes'. Did you mean r50_os8_cityscapes, "
        "r50_os16_cityscapes, r101_os8_cityscapes? Run `pspnet-trt zoo` for the list."]
    assert not (tmp_path / "x.onnx").exists()


def test_cli_zoo_lists_17_entries_with_miou():
    out = subprocess.run([sys.executable, "-m", "pspnet_trt", "zoo"], capture_output=True, text=True, check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith(("| r", "| mv2"))]
    assert len(rows) == 17
    assert "| mv2_os8_cityscapes | mobilenetv2-D8 | cityscapes | 19 | 512x1024 | 512x1024 | 73.64 |" in out
    assert "| r50_os8_cityscapes | resnet50-D8 | cityscapes | 19 | 512x1024 | 512x1024 | 79.05 |" in out
    assert "| r18_os8_camvid | resnet18-D8 | camvid | 11 | 360x480 | 360x480 | - (checkpoint: " \
           "samples/r18_os8_camvid_camvid.pth) |" in out
