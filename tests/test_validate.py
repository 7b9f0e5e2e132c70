"""The validator's gate discriminates: the same weights pass, an export of other weights fails."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from pspnet_trt.data import open_dataset
from pspnet_trt.deploy import DeployInfo
from pspnet_trt.export import export_onnx
from pspnet_trt.models import PSPNet, randomize_
from pspnet_trt.runtime.ort import OrtBackend
from pspnet_trt.runtime.torch_backend import TorchBackend
from pspnet_trt.validate import ValidationError, predict_slide, slide_windows, validate
from pspnet_trt.zoo import get_spec

SIZE = (64, 96)


def tiny(seed):
    return randomize_(PSPNet(num_classes=11, depth=18, output_stride=8, ppm_channels=16, aux_channels=16), seed).eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A CamVid-layout tree whose labels are model A's own predictions: PyTorch A scores 100 % mIoU."""
    root = tmp_path_factory.mktemp("camvid")
    info = DeployInfo.from_spec(get_spec("r18_os8_camvid"), input_size=SIZE, output="both")
    model_a, model_b = tiny(1), tiny(2)
    reference = TorchBackend(model_a, info.with_(output="logits"))
    rng = np.random.default_rng(0)
    for i in range(4):
        img = cv2.GaussianBlur(rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8), (9, 9), 3)
        (root / "test").mkdir(exist_ok=True)
        (root / "testannot").mkdir(exist_ok=True)
        cv2.imwrite(str(root / "test" / f"{i}.png"), img)
        from pspnet_trt.validate import predict_whole

        cv2.imwrite(str(root / "testannot" / f"{i}.png"), predict_whole(reference, img, SIZE))
    a = export_onnx(model_a, info, root / "a.onnx")
    a16 = export_onnx(model_a, info, root / "a16.onnx", precision="fp16")
    b = export_onnx(model_b, info, root / "b.onnx")
    return root, reference, a, a16, b


def test_same_weights_pass_other_weights_fail(setup, tmp_path):
    root, reference, a, a16, b = setup
    ds = open_dataset("camvid", root, "test")
    report = validate(reference, [OrtBackend(a), OrtBackend(a16), OrtBackend(b)], ds, tolerance=0.5,
                      report_dir=tmp_path / "rep", progress=False)
    rows = {r["backend"]: r for r in report.rows}
    assert rows["pytorch"]["miou"] == pytest.approx(100.0)
    assert rows["onnxruntime fp32 (a.onnx)"]["passed"] and rows["onnxruntime fp32 (a.onnx)"]["agreement"] > 99.99
    assert rows["onnxruntime fp32 (b.onnx)"]["passed"] is False
    assert rows["onnxruntime fp32 (b.onnx)"]["miou"] < 50
    assert not report.passed
    saved = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert saved["passed"] is False and len(saved["backends"]) == 4
    assert "**FAIL**" in (tmp_path / "rep" / "report.md").read_text()
    assert (tmp_path / "rep" / "iou_per_class.png").stat().st_size > 1000


def test_mismatched_artifacts_are_refused(setup, tmp_path):
    root, reference, *_ = setup
    other_size = DeployInfo.from_spec(get_spec("r18_os8_camvid"), input_size=(64, 64), output="both")
    path = export_onnx(tiny(1), other_size, tmp_path / "s.onnx")
    with pytest.raises(ValidationError, match="64x64 inputs"):
        validate(reference, [OrtBackend(path)], open_dataset("camvid", root, "test"), progress=False)
    m7 = randomize_(PSPNet(num_classes=7, depth=18, ppm_channels=16, aux_channels=16), 0)
    path7 = export_onnx(m7, DeployInfo.from_spec(get_spec("r18_os8_camvid"), input_size=SIZE, num_classes=7), tmp_path / "c.onnx")
    with pytest.raises(ValidationError, match="7 classes"):
        validate(reference, [OrtBackend(path7)], open_dataset("camvid", root, "test"), progress=False)


def test_slide_mode_covers_the_image_and_matches_whole_when_one_window(setup):
    _, reference, a, *_ = setup
    assert slide_windows(100, 64, 43) == [0, 36] and slide_windows(50, 64, 43) == [0]
    img = np.random.default_rng(3).integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    one = predict_slide(OrtBackend(a), img, SIZE)  # image == crop: a single window
    from pspnet_trt.validate import predict_whole

    assert (one == predict_whole(OrtBackend(a), img, SIZE)).mean() > 0.9999
    big = np.random.default_rng(4).integers(0, 256, (100, 200, 3), dtype=np.uint8)
    assert predict_slide(reference, big, (100, 200)).shape == (100, 200)


def test_cli_exit_codes(setup, tmp_path):
    root = setup[0]
    from pspnet_trt.checkpoints import save_checkpoint

    # the zoo entry has full widths; the CLI builds from the zoo, so use the full-width model here
    from pspnet_trt.models import build_model

    full = randomize_(build_model("r18_os8_camvid"), 1)
    ckpt = save_checkpoint(tmp_path / "a.pth", full.state_dict())
    info = DeployInfo.from_spec(get_spec("r18_os8_camvid"), input_size=SIZE)
    good = export_onnx(full, info, tmp_path / "good.onnx")
    base = [sys.executable, "-m", "pspnet_trt", "validate", "--model", "r18_os8_camvid", "--checkpoint", str(ckpt),
            "--data", str(root), "--split", "test", "--tolerance", "0.0"]
    ok = subprocess.run(base + ["--onnx", str(good), "--report", str(tmp_path / "r1")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr[-2000:]
    missing = subprocess.run(base[:-4] + ["--split", "val", "--onnx", str(good), "--report", str(tmp_path / "r2")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "split 'val'" in missing.stderr and "Traceback" not in missing.stderr
