"""Your own data: the folder data set (classes.json, images/<split>/, masks/<split>/) through every stage, and bad
data as one line everywhere. The data are made here: CamVid's shipped sample images relaid as a 6-class set
(tools/camvid_folder.py: JPEG images, class-id train masks, RGB palette val masks, no test split, renamed files)."""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from pspnet_trt.cli import main
from pspnet_trt.data import DatasetError, open_dataset

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "camvid"
SHIPPED = ROOT / "samples" / "r18_os8_camvid_camvid.pth"
SIZE = (90, 120)  # the data sets' image size here (H, W): CamVid's 360x480 / 4


def _tool():
    spec = importlib.util.spec_from_file_location("camvid_folder", ROOT / "tools" / "camvid_folder.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


camvid_folder = _tool()
CLASSES, PALETTE = camvid_folder.CLASSES, camvid_folder.PALETTE


def make_set(root: Path, train: int = 8, val: int = 4) -> Path:
    """The 6-class data set from the shipped CamVid samples (val from their test split), at :data:`SIZE`."""
    return camvid_folder.make(SAMPLE, root, train, val, val_from="test", size=SIZE)


@pytest.fixture(scope="module")
def roads6(tmp_path_factory) -> Path:
    return make_set(tmp_path_factory.mktemp("data") / "roads6")


def train_args(data: Path, work: Path, *extra: str) -> list:
    return ["train", "--model", "r18_os8_camvid", "--data", str(data), "--work-dir", str(work), "--batch-size", "2",
            "--crop", "64x64", "--iters", "2", "--eval-limit", "2", "--threads", "2", *extra]


@pytest.fixture(scope="module")
def tuned(roads6, tmp_path_factory) -> Path:
    """The shipped 11-class CamVid model fine-tuned (2 iterations) onto the 6 classes: its checkpoint."""
    work = tmp_path_factory.mktemp("train") / "run"
    assert main(train_args(roads6, work, "--workers", "0", "--load-from", str(SHIPPED))) == 0
    return work / "checkpoints-epoch-latest.pth"


def write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


# --- the layout ---------------------------------------------------------------------------------------------

def tiny_set(root: Path, classes: dict) -> Path:
    (root / "images" / "val").mkdir(parents=True)
    (root / "masks" / "val").mkdir(parents=True)
    (root / "classes.json").write_text(json.dumps(classes))
    return root


def test_masks_as_class_ids_palette_pngs_and_rgb_colours(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    root = tiny_set(tmp_path / "d", {"classes": ["road", "sky", "car"], "palette": [[128, 64, 128], [70, 130, 180],
                                                                                    [0, 0, 142]],
                                     "ignore_index": 250, "ignore_color": [0, 0, 0]})
    ids = np.array([[0, 1, 2, 250]], np.uint8).repeat(4, 0).repeat(2, 1)  # 4x8, 250 = not labelled
    expected = np.where(ids == 250, 255, ids)
    for stem in ("a", "b", "c"):
        write(root / "images" / "val" / f"{stem}.jpg", np.full((4, 8, 3), 100, np.uint8))
    write(root / "masks" / "val" / "a.png", ids)  # class ids
    p = Image.fromarray(ids, mode="P")  # palette PNG: its indices are the class ids (250: not labelled)
    p.putpalette([9, 9, 9] * 256)  # colours that mean nothing: the indices count
    p.save(root / "masks" / "val" / "b.png")
    colours = np.array([*(c[::-1] for c in [[128, 64, 128], [70, 130, 180], [0, 0, 142]])] + [[0, 0, 0]] * 253,
                       np.uint8)
    write(root / "masks" / "val" / "c.png", colours[np.where(ids == 250, 3, ids)])  # RGB, black = not labelled
    ds = open_dataset("camvid", root, "val")  # classes.json decides, whatever the zoo entry's layout
    assert ds.kind == "d" and ds.info.class_names == ("road", "sky", "car") and ds.num_classes == 3
    assert np.array_equal(ds[0].label, expected)
    assert np.array_equal(ds[1].label, expected)
    assert np.array_equal(ds[2].label, expected)
    bgr = cv2.imread(str(root / "masks" / "val" / "c.png"))
    bgr[1, 2] = (30, 20, 10)
    write(root / "masks" / "val" / "c.png", bgr)
    with pytest.raises(DatasetError, match=r"masks/val/c\.png: has colour RGB \(10, 20, 30\), which is not in the "
                                           r"palette"):
        ds[2]


def test_palette_png_indices_are_class_ids(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    root = tiny_set(tmp_path / "d", {"classes": ["a", "b"]})
    write(root / "images" / "val" / "x.png", np.zeros((2, 3, 3), np.uint8))
    p = Image.fromarray(np.array([[0, 1, 255], [1, 0, 255]], np.uint8), mode="P")
    p.putpalette([0, 0, 0] * 256)  # every index black: only the indices can tell the classes apart
    p.save(root / "masks" / "val" / "x.png")
    assert open_dataset("folder", root, "val")[0].label.tolist() == [[0, 1, 255], [1, 0, 255]]


def test_bad_files_and_folders_are_one_line_naming_them(tmp_path):
    root = tiny_set(tmp_path / "d", {"classes": ["a", "b"]})
    write(root / "images" / "val" / "x.jpg", np.random.default_rng(0).integers(0, 255, (64, 96, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"image .*images/val/x\.jpg has no mask .*masks/val/x\.png"):
        open_dataset("folder", root, "val")
    write(root / "masks" / "val" / "x.png", np.zeros((64, 96), np.uint8))
    write(root / "masks" / "val" / "y.png", np.zeros((64, 96), np.uint8))
    with pytest.raises(DatasetError, match=r"mask .*masks/val/y\.png has no image y\.\*"):
        open_dataset("folder", root, "val")
    (root / "masks" / "val" / "y.png").unlink()
    write(root / "masks" / "val" / "x.png", np.zeros((60, 96), np.uint8))
    with pytest.raises(DatasetError, match=r"label map .*x\.png is 96x60 but its image .*x\.jpg is 96x64"):
        open_dataset("folder", root, "val")[0]
    write(root / "masks" / "val" / "x.png", np.zeros((64, 96), np.uint8))
    assert open_dataset("folder", root, "val")[0].label.shape == (64, 96)
    data = (root / "images" / "val" / "x.jpg").read_bytes()
    (root / "images" / "val" / "x.jpg").write_bytes(data[: len(data) * 3 // 4])  # cut short: OpenCV decodes it anyway
    with pytest.raises(DatasetError, match=r"cannot read image .*x\.jpg: the JPEG is truncated"):
        open_dataset("folder", root, "val")[0]
    (root / "images" / "val" / "x.jpg").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match=r"cannot read image .*x\.jpg"):
        open_dataset("folder", root, "val")[0]
    with pytest.raises(DatasetError, match=r"has no split 'train' \(no folder images/train/; splits here: val\)"):
        open_dataset("folder", root, "train")
    for bad, needle in (("{", "is not valid JSON"), ('{"classes": []}', '"classes" must be a non-empty list'),
                        ('{"classes": ["a", "a"]}', "a appear more than once"),
                        ('{"classes": ["a"], "palette": [[1, 2]]}', r"colour of 'a' is \[1, 2\]"),
                        ('{"classes": ["a", "b"], "ignore_index": 1}', '"ignore_index" is 1'),
                        ('{"classes": ["a"], "colours": []}', "unknown key.*colours")):
        (root / "classes.json").write_text(bad)
        with pytest.raises(DatasetError, match=needle):
            open_dataset("folder", root, "val")


def test_rgb_masks_need_a_palette(tmp_path):
    root = tiny_set(tmp_path / "d", {"classes": ["a", "b"]})
    write(root / "images" / "val" / "x.png", np.zeros((2, 2, 3), np.uint8))
    write(root / "masks" / "val" / "x.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"x\.png: is an RGB image, but classes\.json has no \"palette\""):
        open_dataset("folder", root, "val")[0]


def test_a_mask_value_that_is_no_class_is_refused_in_a_zoo_layout_too(tmp_path):
    shutil.copytree(SAMPLE / "test", tmp_path / "test")
    shutil.copytree(SAMPLE / "testannot", tmp_path / "testannot")
    first = sorted((tmp_path / "testannot").iterdir())[0]
    label = cv2.imread(str(first), cv2.IMREAD_UNCHANGED)
    label[0, 0] = 14  # CamVid has 11 classes (11 = void): 14 was silently ignored
    write(first, label)
    with pytest.raises(DatasetError, match=rf"{first.name}: holds the value 14, which is no class of this "
                                           r"11-class data set"):
        open_dataset("camvid", tmp_path, "test")[0]


# --- train -> export -> info -> calibrate -> quantize -> validate -> predict ------------------------------------

def test_fine_tune_the_shipped_model_onto_six_classes_and_deploy_it(roads6, tuned, tmp_path, capsys, caplog):
    import torch

    from pspnet_trt.checkpoints import read_state_dict
    from pspnet_trt.models import build_model

    ckpt = torch.load(tuned, map_location="cpu", weights_only=True)
    assert ckpt["classes"] == {"dataset": "roads6", "class_names": CLASSES, "palette": PALETTE}
    # sssegmentation reads 'model': a plain state dict of the 6-class model
    model = build_model("r18_os8_camvid", num_classes=6)
    model.load_state_dict(read_state_dict(tuned), strict=True)

    onnx, int8 = tmp_path / "roads6.onnx", tmp_path / "roads6_int8.onnx"
    assert main(["export", "--model", "r18_os8_camvid", "--checkpoint", str(tuned), "--input-size", "96x128",
                 "--out", str(onnx)]) == 0
    capsys.readouterr()
    assert main(["info", str(onnx), "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)["metadata"]
    assert meta["class_names"] == CLASSES and meta["palette"] == PALETTE and meta["extra"]["dataset"] == "roads6"

    calib = tmp_path / "calib.txt"
    assert main(["calibrate", "--model", "r18_os8_camvid", "--data", str(roads6), "--num-images", "4",
                 "--input-size", "96x128", "--out", str(calib)]) == 0
    assert main(["quantize", "--onnx", str(onnx), "--calibration", str(calib), "--data", str(roads6),
                 "--out", str(int8)]) == 0
    report = tmp_path / "report"
    assert main(["validate", "--model", "r18_os8_camvid", "--checkpoint", str(tuned), "--data", str(roads6),
                 "--split", "val", "--onnx", str(onnx), "--onnx", str(int8), "--tolerance", "1.0",
                 "--report", str(report)]) == 0
    rep = json.loads((report / "report.json").read_text())
    assert rep["class_names"] == CLASSES and rep["dataset"] == "roads6" and rep["split"] == "val"
    torch_row, fp32, q = rep["backends"]
    assert abs(fp32["delta"]) <= 0.05 and q["delta"] >= -1.0
    assert list(torch_row["iou"]) == CLASSES

    image = sorted((roads6 / "images" / "val").iterdir())[0]
    for model_args in (["--model", str(int8)], ["--model", "r18_os8_camvid", "--checkpoint", str(tuned)]):
        out = tmp_path / f"pred{len(model_args)}"
        assert main(["predict", *model_args, "--out", str(out), str(image)]) == 0
        labels = cv2.imread(str(out / f"{image.stem}_labels.png"), cv2.IMREAD_UNCHANGED)
        assert labels.shape == SIZE and labels.dtype == np.uint8 and labels.max() <= 5

    from pspnet_trt.serving.repository import write_model

    triton = write_model(onnx, tmp_path / "repo")
    assert (triton / "labels.txt").read_text().splitlines() == CLASSES

    # DeepStream's label file: from the manifest an engine build copies from the ONNX metadata (no TensorRT here)
    from pspnet_trt.artifacts import read_onnx_info
    from pspnet_trt.serving.deepstream import write_deepstream
    from pspnet_trt.trt.manifest import Manifest, write_manifest

    info = read_onnx_info(onnx).with_(output="logits", input_format="pixels")
    engine = tmp_path / "roads6.engine"
    engine.write_bytes(b"a stand-in: the label file comes from the manifest")
    write_manifest(engine, Manifest(deploy=info.to_dict(), tensorrt_version="10.8.0", gpu={"name": "x"},
                                    precision="fp32", input_name=info.input_name, input_shape=list(info.input_shape(1)),
                                    outputs=list(info.output_names), onnx=str(onnx), onnx_sha256="0",
                                    build_flags={"max_batch": 1}))
    _, labels_file = write_deepstream(engine, tmp_path / "ds")
    assert labels_file.read_text().splitlines() == CLASSES


def test_load_from_another_class_count_leaves_only_the_classifiers(roads6, tmp_path, caplog):
    """Every tensor but the last conv of the two heads comes from the 11-class checkpoint; one log line names them."""
    import torch

    from pspnet_trt.checkpoints import save_checkpoint
    from pspnet_trt.models import PSPNet, randomize_

    start = randomize_(PSPNet(num_classes=11, depth=18, output_stride=8, ppm_channels=16, aux_channels=16), 3)
    save_checkpoint(tmp_path / "start.pth", start.state_dict())
    work = tmp_path / "ft"
    with caplog.at_level(logging.INFO, logger="pspnet_trt"):
        assert main(train_args(roads6, work, "--workers", "0", "--load-from", str(tmp_path / "start.pth"),
                               "--ppm-channels", "16", "--aux-channels", "16", "--lr", "1e-9")) == 0
    skipped = ["decoder.1.weight", "decoder.1.bias", "auxiliary_decoder.4.weight", "auxiliary_decoder.4.bias"]
    lines = [r.getMessage() for r in caplog.records if "except its classifier layers" in r.getMessage()]
    assert len(lines) == 1 and lines[0].endswith(": " + ", ".join(skipped)) and "11 classes there, 6 here" in lines[0]
    tuned = torch.load(work / "checkpoints-epoch-latest.pth", map_location="cpu", weights_only=True)["model"]
    assert tuned["decoder.1.weight"].shape[0] == 6 and tuned["auxiliary_decoder.4.bias"].shape == (6,)
    for key, value in start.state_dict().items():
        if key not in skipped and value.is_floating_point() and "running" not in key:
            torch.testing.assert_close(tuned[key], value, rtol=0, atol=1e-5)  # lr 1e-9: as loaded


# --- bad data in train, validate, calibrate ---------------------------------------------------------------------

def test_validate_names_the_mask_holding_a_value_that_is_no_class(roads6, tuned, tmp_path, capsys):
    data = tmp_path / "roads6"
    shutil.copytree(roads6, data)
    mask = sorted((data / "masks" / "val").iterdir())[1]
    write(mask, np.full(SIZE, 9, np.uint8))
    assert main(["validate", "--model", "r18_os8_camvid", "--checkpoint", str(tuned), "--data", str(data),
                 "--split", "val", "--report", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("pspnet-trt validate: error: label map ")
    assert f"{mask.name}: holds the value 9, which is no class of this 6-class data set" in err


def test_a_bad_mask_in_a_loader_worker_is_one_line_and_no_checkpoint(roads6, tmp_path):
    data = tmp_path / "roads6"
    shutil.copytree(roads6, data)
    mask = sorted((data / "masks" / "train").iterdir())[2]
    colours = np.full((*SIZE, 3), PALETTE[0][::-1], np.uint8)
    colours[3, 4] = (7, 8, 9)  # BGR: RGB (9, 8, 7) is in no palette
    write(mask, colours)
    work = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "pspnet_trt", *train_args(data, work, "--workers", "2", "--iters",
                                                                             "8", "--eval-every", "0")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "DataLoader worker" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"{mask.name}: has colour RGB (9, 8, 7), which is not in the palette" in errors[0]
    assert not list(work.glob("checkpoints-*.pth")) and not (work / "summary.json").exists()
    assert proc.stdout.strip() == ""  # nothing claimed as trained


def test_no_val_split_and_no_eval_split_is_refused_at_once(roads6, tmp_path, capsys):
    data = tmp_path / "roads6"
    shutil.copytree(roads6, data)
    shutil.rmtree(data / "images" / "val")
    shutil.rmtree(data / "masks" / "val")
    work = tmp_path / "run"
    start = time.monotonic()
    assert main(train_args(data, work, "--workers", "0")) == 2
    assert time.monotonic() - start < 30
    err = capsys.readouterr().err.strip()
    assert "evaluation split 'val'" in err and "--eval-split" in err and "splits here: train" in err
    assert not work.exists()  # nothing written: no work dir, no checkpoint
    # a missing --load-from file: also before anything is written
    assert main(train_args(data, work, "--eval-split", "train", "--load-from", str(tmp_path / "none.pth"))) == 2
    assert "none.pth does not exist" in capsys.readouterr().err and not work.exists()


def test_calibrate_reads_every_image_it_lists(roads6, tmp_path, capsys):
    data = tmp_path / "roads6"
    shutil.copytree(roads6, data)
    image = sorted((data / "images" / "train").iterdir())[0]
    image.write_bytes(image.read_bytes()[:600])  # truncated: found here, not by quantize minutes later
    assert main(["calibrate", "--model", "r18_os8_camvid", "--data", str(data), "--num-images", "8",
                 "--out", str(tmp_path / "c.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "cannot read image" in err and image.name in err
    assert not (tmp_path / "c.txt").exists()
