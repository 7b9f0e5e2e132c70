"""The validator: inference modes (fake backends), the gate (fake and real backends), report, CLI exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from pspnet_trt.data import DatasetError, open_dataset
from pspnet_trt.deploy import DeployInfo
from pspnet_trt.runtime.backend import Backend
from pspnet_trt.validate import (
    ValidationError,
    predict_slide,
    predict_whole,
    slide_logits,
    slide_windows,
    validate,
)
from pspnet_trt.zoo import get_spec

SIZE = (64, 128)  # artifact input size (H, W)
SPEC = get_spec("r18_os8_camvid")
INFO = DeployInfo.from_spec(SPEC, input_size=SIZE, output="logits")
MEAN, STD = np.array(SPEC.normalization.mean), np.array(SPEC.normalization.std)


class Fake(Backend):
    """Logits = fn(normalised batch); optionally a file path (so messages can name it)."""

    name = "fake"

    def __init__(self, fn, info=INFO, path=None):
        self.fn, self.info, self.calls = fn, info, 0
        if path is not None:
            self.path = Path(path)

    def run(self, batch):
        batch = self.check_batch(batch)
        self.calls += 1
        logits = self.fn(batch).astype(np.float32)
        out = {}
        if "logits" in self.info.output_names:
            out["logits"] = logits
        if "labels" in self.info.output_names:
            out["labels"] = logits.argmax(1).astype(np.uint8)
        return out


def grey_level(c):
    return 40 * c + 10


def intensity_classes(batch):
    """Perfect on grey images whose level is grey_level(class): logits = -|level - grey_level(c)|, 6 of 11 classes."""
    level = batch[:, 0] * STD[0] + MEAN[0]  # channel 0 = R (rgb input), all channels equal on grey images
    logits = np.full((batch.shape[0], 11, *batch.shape[2:]), -1e3, np.float32)
    for c in range(6):
        logits[:, c] = -np.abs(level - grey_level(c))
    return logits


def blind_rows(k):
    """intensity_classes, but the top k rows of every input are called class 0."""
    def fn(batch):
        logits = intensity_classes(batch)
        logits[:, 0, :k] = 1e3
        return logits
    return fn


@pytest.fixture(scope="module")
def grey_tree(tmp_path_factory):
    """CamVid-layout tree: 3 grey block images at the input size; label = the class each grey level encodes."""
    root = tmp_path_factory.mktemp("grey")
    rng = np.random.default_rng(0)
    for i in range(3):
        classes = rng.integers(0, 6, (4, 8)).repeat(16, 0).repeat(16, 1).astype(np.uint8)  # 64x128 blocks
        label = classes.copy()
        label[:4] = 255  # a void band
        img = np.repeat(np.vectorize(grey_level)(classes).astype(np.uint8)[..., None], 3, axis=2)
        for folder, array in (("test", img), ("testannot", label)):
            (root / folder).mkdir(exist_ok=True)
            cv2.imwrite(str(root / folder / f"{i}.png"), array)
    return root


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """PyTorch's default intra-op threads thrash when the 2 cores are shared (0.7 s vs 0.03 s per tiny forward)."""
    try:
        import torch
    except ImportError:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- inference modes ----------------------------------------------------------------------------------------

def ssseg_windows(size, crop, stride):
    """sssegmentation's slide grid (its test.py), written as it does it."""
    n = max(size - crop + stride - 1, 0) // stride + 1
    starts = []
    for i in range(n):
        end = min(i * stride + crop, size)
        starts.append(max(end - crop, 0))
    return starts


@pytest.mark.parametrize("size,crop,stride", [(100, 64, 43), (64, 64, 43), (50, 64, 43), (1024, 512, 341),
                                              (2048, 1024, 683), (683, 512, 341), (129, 64, 64)])
def test_slide_windows_equal_sssegmentation_grid(size, crop, stride):
    ours = slide_windows(size, crop, stride)
    assert ours == ssseg_windows(size, crop, stride)
    covered = np.zeros(max(size, crop), bool)
    for s in ours:
        covered[s:s + crop] = True
    assert covered[:size].all()


def test_slide_logits_average_overlapping_crops():
    """Logits that depend on the position inside the crop: the average over overlaps is exactly checkable."""
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(11, 3)).astype(np.float32)
    ramp = rng.normal(size=(11,)).astype(np.float32)

    def fn(batch):  # per-pixel linear map + a per-class ramp along the crop's columns
        cols = np.arange(batch.shape[3], dtype=np.float32) / batch.shape[3]
        return np.einsum("kc,nchw->nkhw", weights, batch) + ramp[None, :, None, None] * cols

    backend = Fake(fn)
    x = rng.normal(size=(3, 100, 300)).astype(np.float32)
    got = slide_logits(backend, x, stride=(30, 70))
    # independent: sssegmentation's loop, crop 64x128, stride 30x70 on the 100x300 input
    total, count = np.zeros((11, 100, 300)), np.zeros((100, 300))
    for y in ssseg_windows(100, 64, 30):
        for x0 in ssseg_windows(300, 128, 70):
            crop = x[None, :, y:y + 64, x0:x0 + 128]
            total[:, y:y + 64, x0:x0 + 128] += fn(crop)[0]
            count[y:y + 64, x0:x0 + 128] += 1
    assert backend.calls == len(ssseg_windows(100, 64, 30)) * len(ssseg_windows(300, 128, 70)) == 3 * 4
    assert np.abs(got - total / count).max() < 1e-5
    assert len(np.unique(count)) > 1  # the case really has overlaps of different depth
    # smaller than one crop: padded with the mean (0 after normalisation), padding cut off again
    small = x[:, :40, :90]
    padded = np.zeros((3, 64, 128), np.float32)
    padded[:, :40, :90] = small
    assert np.abs(slide_logits(backend, small) - fn(padded[None])[0, :, :40, :90]).max() < 1e-5


def test_slide_equals_whole_for_a_pixelwise_model_and_handles_big_images():
    rng = np.random.default_rng(2)
    weights = rng.normal(size=(11, 3)).astype(np.float32)
    backend = Fake(lambda b: np.einsum("kc,nchw->nkhw", weights, b))
    image = rng.integers(0, 256, (150, 333, 3), dtype=np.uint8)
    expected = np.einsum("kc,chw->khw", weights, ((image[..., ::-1] - MEAN) / STD).transpose(2, 0, 1)).argmax(0)
    assert np.array_equal(predict_slide(backend, image, (150, 333)), expected)
    # keep-ratio test resize (sssegmentation's Resize(keep_ratio)), result back at the label size
    out = predict_slide(backend, image, (150, 333), fit=(2048, 512))
    assert out.shape == (150, 333) and out.dtype == np.uint8


def test_whole_mode_brings_outputs_back_to_the_label_size():
    """Logits are resized bilinearly then argmax'd; a labels output is resized by nearest neighbour."""
    cols = np.linspace(-1, 1, SIZE[1], dtype=np.float32)

    def two_classes(batch):  # class 0 left, class 1 right, boundary in the middle of the input
        logits = np.full((batch.shape[0], 11, *SIZE), -10, np.float32)
        logits[:, 0], logits[:, 1] = -cols, cols
        return logits

    image = np.zeros((30, 50, 3), np.uint8)
    for output in ("logits", "labels", "both"):
        pred = predict_whole(Fake(two_classes, INFO.with_(output=output)), image, (90, 301))
        assert pred.shape == (90, 301) and set(np.unique(pred)) == {0, 1}
        assert (pred[:, :150] == 0).all() and (pred[:, 151:] == 1).all()
    labels = np.random.default_rng(3).integers(0, 11, SIZE).astype(np.uint8)
    nearest = predict_whole(Fake(lambda b: np.eye(11, dtype=np.float32)[labels].transpose(2, 0, 1)[None],
                                 INFO.with_(output="labels")), image, (100, 300))
    assert np.array_equal(nearest, cv2.resize(labels, (300, 100), interpolation=cv2.INTER_NEAREST))


# --- the gate, on fake backends -----------------------------------------------------------------------------

def test_gate_is_exact_at_the_tolerance(grey_tree, tmp_path):
    ds = open_dataset("camvid", grey_tree, "test")
    reference = Fake(intensity_classes)
    worse = Fake(blind_rows(20), path=tmp_path / "worse.onnx")
    report = validate(reference, [worse, Fake(intensity_classes, path=tmp_path / "same.onnx")], ds, progress=False,
                      tolerance=0.5)
    ref, bad, same = report.rows
    assert ref["miou"] == pytest.approx(100.0) and ref["pixel_accuracy"] == pytest.approx(100.0)
    assert same["delta"] == 0.0 and same["agreement"] == 100.0 and same["passed"]
    drop = -bad["delta"]
    assert drop > 0.5 and not bad["passed"] and not report.passed and report.failed == ["fake fp32 (worse.onnx)"]
    levels = np.stack([s.image[:20, :, 0] for s in ds])  # rows 0-19: called 0, right only where the class is 0
    assert bad["agreement"] == pytest.approx(100 * (1 - (levels != grey_level(0)).sum() / (3 * 64 * 128)))
    assert "below the fp32 floor" in " ".join(bad["why"])  # its agreement fails it too
    # the tolerance alone (agreement floor 0): exact at the boundary
    assert validate(reference, [worse], ds, tolerance=drop + 1e-6, min_agreement=0, progress=False).passed
    assert not validate(reference, [worse], ds, tolerance=drop - 1e-6, min_agreement=0, progress=False).passed
    assert validate(reference, [worse], ds, limit=1, progress=False).images == 1
    same = Fake(intensity_classes, path=tmp_path / "same.onnx")
    assert validate(reference, [same], ds, tolerance=0.0, progress=False).passed  # "at most", not "less than"


def test_refusals_name_the_artifact(grey_tree, tmp_path):
    ds = open_dataset("camvid", grey_tree, "test")
    reference = Fake(intensity_classes)
    labels_only = Fake(intensity_classes, INFO.with_(output="labels"), path=tmp_path / "l.onnx")
    with pytest.raises(ValidationError, match=r"l\.onnx outputs labels only.*--mode whole"):
        validate(reference, [labels_only], ds, mode="slide", progress=False)
    cases = [
        (INFO.with_(input_size=(64, 64)), r"x\.onnx takes 64x64 inputs but the reference takes 64x128"),
        (DeployInfo.from_spec(SPEC, input_size=SIZE, num_classes=7, output="logits"), r"x\.onnx predicts 7 classes"),
        (DeployInfo.from_spec(get_spec("r50_os8_voc"), input_size=SIZE, output="logits").with_(
            class_names=INFO.class_names, palette=INFO.palette), r"x\.onnx was exported from zoo model 'r50_os8_voc'"),
    ]
    for info, message in cases:
        with pytest.raises(ValidationError, match=message):
            validate(reference, [Fake(intensity_classes, info, path=tmp_path / "x.onnx")], ds, progress=False)
    with pytest.raises(ValidationError, match="limit"):
        validate(reference, [], ds, limit=0, progress=False)


def test_bad_dataset_files_stop_with_the_file_named(grey_tree, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(grey_tree, root)
    cv2.imwrite(str(root / "testannot" / "1.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(DatasetError, match=r"testannot/1\.png is 10x10 but its image"):
        validate(Fake(intensity_classes), [], open_dataset("camvid", root, "test"), progress=False)
    for i in range(3):
        cv2.imwrite(str(root / "testannot" / f"{i}.png"), np.full((64, 128), 11, np.uint8))  # all void
    with pytest.raises(ValidationError, match="no labelled pixel"):
        validate(Fake(intensity_classes), [], open_dataset("camvid", root, "test"), progress=False)


def test_report_files(grey_tree, tmp_path):
    ds = open_dataset("camvid", grey_tree, "test")
    out = tmp_path / "rep"
    validate(Fake(intensity_classes), [Fake(blind_rows(20), path=tmp_path / "worse.onnx")], ds, progress=False,
             report_dir=out)
    saved = json.loads((out / "report.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert saved["passed"] is False and saved["images"] == 3 and saved["model"] == "r18_os8_camvid"
    assert saved["split"] == "test" and saved["input_size"] == [64, 128] and len(saved["backends"]) == 2
    assert saved["backends"][0]["iou"]["sky"] == pytest.approx(1.0)
    assert saved["backends"][0]["iou"]["bicyclist"] is None  # class 10 in neither labels nor predictions
    md = (out / "report.md").read_text()
    assert "# Validation: FAIL (fake fp32 (worse.onnx))" in md and "**FAIL**" in md
    assert "| bicyclist | - | - |" in md and "| sky | 100.00 |" in md
    png = cv2.imread(str(out / "iou_per_class.png"))
    assert png is not None and png.shape[1] >= 700


# --- real backends: PyTorch and ONNX Runtime ----------------------------------------------------------------

def smooth_images(n=3, shape=(96, 160), seed=0):
    rng = np.random.default_rng(seed)
    return [cv2.resize(rng.integers(0, 256, (6, 10, 3), dtype=np.uint8), shape[::-1], interpolation=cv2.INTER_LINEAR)
            for _ in range(n)]


def balanced(model, images):
    """A random model predicts one class almost everywhere; shifting the classifier bias by the mean logits
    spreads its predictions over all classes, so that labels made from them are not one class."""
    import torch

    from pspnet_trt.preprocess import make_batch

    with torch.no_grad():
        logits = model(torch.from_numpy(make_batch(images, SIZE, SPEC.normalization)))
        model.decoder[-1].bias -= logits.mean((0, 2, 3))
    return model


def tiny(seed, images):
    from pspnet_trt.models import PSPNet, randomize_

    model = PSPNet(num_classes=11, depth=18, output_stride=8, ppm_channels=16, aux_channels=16)
    return balanced(randomize_(model, seed).eval(), images)


def write_tree(root, images, predict):
    """CamVid-layout tree of ``images`` whose labels are ``predict(image)``."""
    for i, img in enumerate(images):
        for folder, array in (("test", img), ("testannot", predict(img))):
            (root / folder).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / folder / f"{i}.png"), array)
    return root


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    """Labels = PyTorch model A's own whole-image predictions (at 96x160, input 64x128): A scores 100 % mIoU."""
    from pspnet_trt.export import export_onnx
    from pspnet_trt.runtime.torch_backend import TorchBackend

    tmp = tmp_path_factory.mktemp("tiny")
    info = DeployInfo.from_spec(SPEC, input_size=SIZE, output="both")
    images = smooth_images()
    model_a = tiny(1, images)
    reference = TorchBackend(model_a, info.with_(output="logits"))
    root = write_tree(tmp / "data", images, lambda img: predict_whole(reference, img, img.shape[:2]))
    a = export_onnx(model_a, info, tmp / "a.onnx")
    a16 = export_onnx(model_a, info, tmp / "a16.onnx", precision="fp16")
    b = export_onnx(tiny(2, images), info, tmp / "b.onnx")
    return root, reference, a, a16, b


def test_same_weights_pass_other_weights_fail(tiny_setup, tmp_path):
    from pspnet_trt.runtime.ort import OrtBackend

    root, reference, a, a16, b = tiny_setup
    ds = open_dataset("camvid", root, "test")
    report = validate(reference, [OrtBackend(a), OrtBackend(a16), OrtBackend(b)], ds, tolerance=0.5,
                      report_dir=tmp_path / "rep", progress=False)
    rows = {r["backend"]: r for r in report.rows}
    assert rows["pytorch"]["miou"] == pytest.approx(100.0)
    fp32, fp16, other = (rows[f"onnxruntime {p} ({n})"] for p, n in
                         (("fp32", "a.onnx"), ("fp16", "a16.onnx"), ("fp32", "b.onnx")))
    assert fp32["passed"] and fp32["agreement"] > 99.99 and fp32["delta"] > -0.05
    assert fp16["agreement"] > 99  # measured, not gated here: random weights have near-tied logits FP16 flips
    assert other["passed"] is False and other["miou"] < 50 and other["agreement"] < 70
    assert not report.passed and "onnxruntime fp32 (b.onnx)" in report.failed
    assert "onnxruntime fp32 (a.onnx)" not in report.failed
    assert all(r["images_per_s"] > 0 for r in report.rows)


def test_slide_mode_with_real_backends(tiny_setup):
    from pspnet_trt.runtime.ort import OrtBackend

    root, reference, a, _, b = tiny_setup
    ds = open_dataset("camvid", root, "test")  # 96x160 images, 64x128 crops: 2x2 windows each
    report = validate(reference, [OrtBackend(a), OrtBackend(b)], ds, mode="slide", progress=False)
    same, other = report.rows[1:]
    assert report.context["stride"] == [43, 86]
    assert same["passed"] and same["agreement"] > 99.99
    assert not other["passed"]
    img = ds[0].image
    assert (predict_slide(OrtBackend(a), img, (96, 160)) == predict_slide(reference, img, (96, 160))).mean() > 0.9999


# --- the command line ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cli_setup(tmp_path_factory):
    """The CLI builds the zoo architecture: full-width r18_os8_camvid checkpoints A and B, exports of both,
    labels = A's predictions."""
    from pspnet_trt.checkpoints import save_checkpoint
    from pspnet_trt.export import export_onnx
    from pspnet_trt.files import sha256_file
    from pspnet_trt.models import build_model, randomize_
    from pspnet_trt.runtime.torch_backend import TorchBackend

    tmp = tmp_path_factory.mktemp("cli")
    out = {}
    images = smooth_images(2)
    for tag, seed in (("a", 1), ("b", 2)):
        model = balanced(randomize_(build_model(SPEC.name), seed).eval(), images)
        ckpt = save_checkpoint(tmp / f"{tag}.pth", model.state_dict())
        info = DeployInfo.from_spec(SPEC, input_size=SIZE, checkpoint_sha256=sha256_file(ckpt))
        out[tag] = ckpt, export_onnx(model, info, tmp / f"{tag}.onnx")
        if tag == "a":
            reference = TorchBackend(model, info.with_(output="logits"))
            root = write_tree(tmp / "data", images, lambda img: predict_whole(reference, img, img.shape[:2]))
            out["size"] = export_onnx(model, info.with_(input_size=(64, 96)), tmp / "a_64x96.onnx")
    return root, out


def run_cli(*args):
    from pspnet_trt.cli import main

    return main(["validate", "--model", SPEC.name, *map(str, args)])


def test_cli_gate_exit_codes(cli_setup, tmp_path, capsys):
    root, art = cli_setup
    (ckpt_a, onnx_a), (_, onnx_b) = art["a"], art["b"]
    base = ("--checkpoint", ckpt_a, "--data", root, "--split", "test")
    import torch

    threads = torch.get_num_threads()
    try:
        assert run_cli(*base, "--onnx", onnx_a, "--threads", 1, "--report", tmp_path / "r1") == 0
        assert torch.get_num_threads() == 1  # --threads reaches the PyTorch reference
    finally:
        torch.set_num_threads(threads)
    assert "Validation: PASS" in capsys.readouterr().out
    assert run_cli(*base, "--onnx", onnx_a, "--onnx", onnx_b, "--report", tmp_path / "r2") == 1
    assert "FAIL (onnxruntime fp32 (b.onnx))" in capsys.readouterr().out
    saved = json.loads((tmp_path / "r2" / "report.json").read_text())
    assert [r.get("same_checkpoint") for r in saved["backends"]] == [None, True, False]
    assert "different checkpoint" in (tmp_path / "r2" / "report.md").read_text()
    assert run_cli(*base, "--onnx", onnx_a, "--mode", "slide", "--report", tmp_path / "r3") == 2
    assert "a.onnx outputs labels only" in capsys.readouterr().err


def test_cli_bad_inputs_exit_2_with_one_line(cli_setup, tmp_path):
    root, art = cli_setup
    ckpt_a, onnx_a = art["a"]
    base = [sys.executable, "-m", "pspnet_trt", "validate", "--model", SPEC.name, "--checkpoint", str(ckpt_a),
            "--data", str(root), "--report", str(tmp_path / "r")]
    cases = [
        (["--split", "val", "--onnx", str(onnx_a)], "split 'val'"),
        (["--split", "test", "--onnx", str(onnx_a), "--onnx", str(art["size"])], "a_64x96.onnx takes 64x96 inputs"),
        (["--split", "test", "--input-size", "64x96", "--onnx", str(onnx_a)], "a.onnx takes 64x128 inputs"),
        (["--split", "test", "--onnx", str(tmp_path / "missing.onnx")], "missing.onnx does not exist"),
    ]
    for extra, message in cases:
        done = subprocess.run(base + extra, capture_output=True, text=True)
        assert done.returncode == 2, done.stderr[-2000:]
        assert message in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_cli_calibrate_quantize_mixed_then_validate_int8(cli_setup, tmp_path, capsys):
    """The INT8 path through the CLI: a list for the ONNX's size, a mixed-precision INT8 file, and the
    validator taking it like any other ONNX artifact."""
    from pspnet_trt.cli import main

    root, art = cli_setup
    ckpt_a, onnx_a = art["a"]
    onnx_b = art["b"][1]
    sample = Path(__file__).resolve().parents[1] / "samples" / "camvid"
    data = tmp_path / "data"  # train (calibration) and val (sensitivity) from the sample; test labelled by A
    for split, src in (("train", sample / "train"), ("trainannot", sample / "trainannot"), ("val", sample / "test"),
                       ("valannot", sample / "testannot"), ("test", root / "test"), ("testannot", root / "testannot")):
        (data / split).parent.mkdir(parents=True, exist_ok=True)
        (data / split).symlink_to(src)
    cal = tmp_path / "cal.txt"
    assert main(["calibrate", "--model", SPEC.name, "--data", str(data), "--num-images", "4",
                 "--input-size", "64x128", "--out", str(cal)]) == 0
    int8 = tmp_path / "a_int8.onnx"
    # a budget no graph can meet (-100 points) with one layer allowed out of INT8: exit 1, naming the best
    # reached; that graph (one FP16 island) is kept beside --out, and the validator takes it like any ONNX
    assert main(["quantize", "--onnx", str(onnx_a), "--calibration", str(cal), "--data", str(data), "--mixed-budget",
                 "-100", "--max-float", "1", "--mixed-images", "2", "--out", str(int8)]) == 1
    assert "not met: the best reached is mIoU" in capsys.readouterr().err and not int8.exists()
    best = tmp_path / "a_int8.over_budget.onnx"
    report = int8.with_suffix(".mixed.md").read_text()
    kept = json.loads(int8.with_suffix(".mixed.json").read_text())["kept_float"]
    assert len(kept) == 1 and kept[0] in report and "run in FP16" in report
    capsys.readouterr()
    # exit 1: whatever the tolerance, the agreement floors fail both (random weights: near-tied logits)
    assert run_cli("--checkpoint", ckpt_a, "--data", data, "--split", "test", "--onnx", best, "--onnx", onnx_b,
                   "--tolerance", "100", "--report", tmp_path / "r") == 1
    rows = json.loads((tmp_path / "r" / "report.json").read_text())["backends"]
    row, unrelated = rows[1], rows[2]
    assert row["precision"] == "int8" and row["same_checkpoint"] is True
    assert "fake-quantization" in row["numerics"] and "fake-quantization" in (tmp_path / "r" / "report.md").read_text()
    # What this test is about: the validator runs the INT8 graph *of this model*. Random weights have
    # near-tied logits, so INT8 rounding flips many pixels and no fixed agreement is meaningful (78.3 % on an
    # AVX2-only CPU, above 80 % on a VNNI one, before INT8 ran as fake-quantization); but its INT8 graph must agree
    # with it far better than another model of the same architecture does (B, other random weights), which is
    # what a wrongly loaded or garbage graph would look like: the bar is halfway from B to 100 %. Measured
    # with fake-quantization (the same on any CPU): INT8 80.8 %, B 8.5 % (bar 54.3 %).
    assert row["agreement"] > unrelated["agreement"] + 0.5 * (100 - unrelated["agreement"]), (row, unrelated)
    # a list made for another size is refused before any work, naming both sizes
    assert main(["calibrate", "--model", SPEC.name, "--data", str(data), "--num-images", "2",
                 "--input-size", "64x96", "--out", str(tmp_path / "c96.txt")]) == 0
    capsys.readouterr()
    assert main(["quantize", "--onnx", str(onnx_a), "--calibration", str(tmp_path / "c96.txt"), "--data", str(data),
                 "--out", str(tmp_path / "x.onnx")]) == 2
    assert "made for input size 64x96 but" in capsys.readouterr().err and not (tmp_path / "x.onnx").exists()


# --- issue 14: out-of-range labels fail the gate; evaluation without an artifact is not a PASS ------------

class OutOfRange(Fake):
    """Labels output = intensity_classes' argmax, but ``value`` where that argmax is ``cls``."""

    def __init__(self, cls, value, path):
        super().__init__(intensity_classes, INFO.with_(output="labels"), path=path)
        self.cls, self.value = cls, value

    def run(self, batch):
        out = super().run(batch)
        labels = out["labels"].copy()
        labels[labels == self.cls] = self.value
        return {"labels": labels}


def test_out_of_range_labels_fail_the_gate_and_are_counted(grey_tree, tmp_path):
    ds = open_dataset("camvid", grey_tree, "test")
    reference = Fake(intensity_classes, INFO.with_(output="labels"))
    bad = OutOfRange(5, 255, tmp_path / "bad.onnx")
    report = validate(reference, [bad], ds, tolerance=100.0, progress=False, report_dir=tmp_path / "rep")
    ref, row = report.rows
    truth5 = sum(int((s.label == 5).sum()) for s in ds)
    predicted5 = sum(int((np.asarray(s.image[..., 0]) == grey_level(5)).sum()) for s in ds)
    assert truth5 > 0 and ref["invalid_pixels"] == 0
    assert row["invalid_pixels"] == predicted5  # every pixel of the prediction, void band included
    name5 = SPEC.class_names[5]
    assert ref["iou"][name5] == pytest.approx(1.0) and row["iou"][name5] == 0.0  # misses, not hits
    assert row["passed"] is False and not report.passed  # any out-of-range pixel fails, whatever the tolerance
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "out-of-range" in md and f"{predicted5}" in md
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["backends"][1]["invalid_pixels"] == predicted5


def test_evaluation_without_artifacts_is_not_a_pass(cli_setup, tmp_path, capsys):
    root, art = cli_setup
    ckpt_a, _ = art["a"]
    assert run_cli("--checkpoint", ckpt_a, "--data", root, "--split", "test", "--input-size", "64x128",
                   "--report", tmp_path / "r") == 0
    out = capsys.readouterr().out
    assert "PASS" not in out and "evaluation only, no artifact gated" in out
    assert "PASS" not in (tmp_path / "r" / "report.md").read_text()
    saved = json.loads((tmp_path / "r" / "report.json").read_text())
    assert saved["passed"] is None and saved["gated"] is False
