"""The demo's stage cache (keyed by content), its engine stage without a usable GPU, and its start from a
shipped checkpoint (issue 14 items 20 and 22, issue 18 item 4)."""

from __future__ import annotations

import dataclasses
import importlib.machinery
import json
import logging
import sys
import types
from pathlib import Path

import pytest

from pspnet_trt import demo
from pspnet_trt.demo import DemoConfig, Stages
from pspnet_trt.trt.plan import engine_plan

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "camvid"


def counting(out: Path):
    calls = []

    def work():
        calls.append(1)
        out.write_text(str(len(calls)))
        return len(calls)

    return calls, work


def test_stage_reruns_when_a_file_inside_an_input_folder_changes(tmp_path):
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "train" / "a.png").write_bytes(b"one")
    stages, out = Stages(tmp_path / "stamps"), tmp_path / "out"
    calls, work = counting(out)
    stages.run("s", {"data": data}, [out], work)
    stages.run("s", {"data": data}, [out], work)
    assert len(calls) == 1
    (data / "train" / "a.png").write_bytes(b"two")  # same path, new content
    Stages(tmp_path / "stamps").run("s", {"data": data}, [out], work)
    assert len(calls) == 2
    (data / "train" / "b.png").write_bytes(b"new file")
    Stages(tmp_path / "stamps").run("s", {"data": data}, [out], work)
    assert len(calls) == 3


def test_stage_reruns_when_the_package_source_changes(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "mod.py").write_text("X = 1\n")
    out = tmp_path / "out"
    calls, work = counting(out)
    Stages(tmp_path / "stamps", source_root=package).run("s", {"n": 1}, [out], work)
    Stages(tmp_path / "stamps", source_root=package).run("s", {"n": 1}, [out], work)
    assert len(calls) == 1
    (package / "mod.py").write_text("X = 2\n")  # the code changed, the version string did not
    Stages(tmp_path / "stamps", source_root=package).run("s", {"n": 1}, [out], work)
    assert len(calls) == 2


def test_source_hash_covers_the_real_package():
    first = demo.source_hash()
    assert first == demo.source_hash() and len(first) == 64


@pytest.fixture(scope="module")
def r18_checkpoint(tmp_path_factory):
    """A randomly initialised r18_os8_camvid saved with fp16 weights, as the shipped checkpoint is."""
    from pspnet_trt.checkpoints import save_checkpoint
    from pspnet_trt.models import build_model, randomize_

    model = randomize_(build_model("r18_os8_camvid"), 5)
    path = tmp_path_factory.mktemp("ckpt") / "r18_os8_camvid_camvid.pth"
    save_checkpoint(path, {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()})
    return path


def test_demo_onnx_files_carry_the_checkpoint_sha256(r18_checkpoint, tmp_path):
    from pspnet_trt.artifacts import read_onnx_info
    from pspnet_trt.files import sha256_file

    cfg = DemoConfig(SAMPLE, tmp_path / "work", tmp_path / "report", input_size=(64, 64))
    stages = Stages(tmp_path / "work" / "stamps")
    _, info, onnx = demo.export_stage(cfg, stages, r18_checkpoint, "uint8")
    sha = sha256_file(r18_checkpoint)
    assert info.checkpoint_sha256 == sha
    assert {read_onnx_info(onnx[p]).checkpoint_sha256 for p in ("fp32", "fp16")} == {sha}


def test_demo_config_starts_from_the_shipped_checkpoint_unless_told_otherwise(r18_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "SHIPPED_CHECKPOINT", r18_checkpoint)
    cfg = DemoConfig.make(None, str(tmp_path), str(tmp_path), fast=False)
    assert cfg.start_from == r18_checkpoint and cfg.train_iters == demo.FINETUNE_ITERS and cfg.lr is not None
    fast = DemoConfig.make(None, str(tmp_path), str(tmp_path), fast=True)
    assert fast.train_iters is not None and fast.lr == demo.FINETUNE_LR and (fast.crop, fast.batch_size) == ((180, 240), 8)
    scratch = DemoConfig.make(None, str(tmp_path), str(tmp_path), fast=False, from_scratch=True)
    assert scratch.start_from is None and scratch.train_iters == demo.SCRATCH_ITERS and scratch.lr is None
    monkeypatch.setattr(demo, "SHIPPED_CHECKPOINT", tmp_path / "absent.pth")
    assert DemoConfig.make(None, str(tmp_path), str(tmp_path), fast=False).start_from is None  # not shipped yet
    from pspnet_trt.errors import UserError

    with pytest.raises(UserError, match="absent.pth"):
        DemoConfig.make(None, str(tmp_path), str(tmp_path), fast=False, start_from=str(tmp_path / "absent.pth"))


def test_every_demo_run_trains_a_fixed_number_of_iterations(r18_checkpoint, tmp_path, monkeypatch):
    """The demo's log said "2000 iterations" and "epoch 1/1000" and stopped after 26: a 2-minute budget over a
    1000-epoch schedule. Now each mode runs a fixed count, handed to the trainer as its length, with no budget."""
    monkeypatch.setattr(demo, "SHIPPED_CHECKPOINT", r18_checkpoint)
    configs = [DemoConfig.make(None, str(tmp_path / "w"), str(tmp_path / "r"), fast=fast, from_scratch=scratch)
               for fast in (False, True) for scratch in (False, True)]
    assert [c.train_iters for c in configs] == [demo.FINETUNE_ITERS, demo.SCRATCH_ITERS, demo.FINETUNE_ITERS_FAST, 200]
    given = []

    def fake_train(config):
        given.append(config)
        raise KeyboardInterrupt  # stop before any work; the stage writes nothing

    monkeypatch.setattr("pspnet_trt.train.train", fake_train)
    monkeypatch.setattr(demo, "start_miou", lambda cfg, ckpt: 0.0)
    for cfg in configs:
        with pytest.raises(KeyboardInterrupt):
            demo.train_stage(cfg, Stages(tmp_path / "stamps"))
    assert [(c.iters, c.max_minutes) for c in given] == [(c.train_iters, None) for c in configs]


def test_the_training_log_states_the_iterations_the_run_does(r18_checkpoint, tmp_path, caplog):
    cfg = DemoConfig(SAMPLE, tmp_path / "work", tmp_path / "report", train_iters=3, crop=(64, 64), batch_size=2,
                     eval_images=1, input_size=(64, 64), start_from=r18_checkpoint, lr=0.001)
    with caplog.at_level(logging.INFO, logger="pspnet_trt"):
        _, summary = demo.train_stage(cfg, Stages(tmp_path / "work" / "stamps"))
    (recipe,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("recipe:")]
    assert summary["iterations"] == 3 and ", 3 iterations," in recipe, recipe
    assert any("3 iterations of batch 2" in r.getMessage() for r in caplog.records)


def test_the_train_stage_runs_again_when_its_inputs_change(r18_checkpoint, tmp_path):
    """`make demo DEMO_FAST=1` then `make demo`: the second training run met the first one's checkpoints in
    work/demo/train and train (one run per work dir) refused it, exit 2."""
    stages = Stages(tmp_path / "work" / "stamps")
    for iters in (1, 2):
        cfg = DemoConfig(SAMPLE, tmp_path / "work", tmp_path / "report", train_iters=iters, crop=(64, 64),
                         batch_size=2, eval_images=1, input_size=(64, 64), start_from=r18_checkpoint, lr=0.001)
        ckpt, summary = demo.train_stage(cfg, stages)
        assert ckpt.is_file() and summary["iterations"] == iters
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.json").write_text("{}")  # a training run the demo did not make: no stamp
    demo.clear_train_dir(tmp_path / "mine", tmp_path / "no-stamps" / "train.json")
    assert (tmp_path / "mine" / "config.json").is_file()


def test_a_time_budget_makes_the_recipe_line_an_upper_bound(tmp_path, caplog):
    """`train --max-minutes` logged the schedule's iterations as if all would run; with a budget they are a bound."""
    from pspnet_trt.train import TrainConfig
    from pspnet_trt.train import trainer as trainer_mod

    base = dict(model="r18_os8_camvid", data=SAMPLE, batch_size=2, crop=(64, 64), workers=0, limit_images=8,
                eval_every=0, ppm_channels=16, aux_channels=16, threads=1, epochs=3)
    lines = []
    for name, minutes in (("plain", None), ("budget", 5.0)):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="pspnet_trt"):
            trainer_mod.setup(TrainConfig(work_dir=tmp_path / name, max_minutes=minutes, **base))
        lines += [r.getMessage() for r in caplog.records if r.getMessage().startswith("recipe:")]
    assert ", 12 iterations," in lines[0] and "at most" not in lines[0], lines
    assert "12 iterations at most (the 5-minute --max-minutes budget may end the run sooner)" in lines[1], lines


def test_demo_artifacts_follow_the_naming_scheme(tmp_path):
    from pspnet_trt.artifacts import artifact_name

    cfg = DemoConfig(SAMPLE, tmp_path / "work", tmp_path / "report", input_size=(180, 240))
    assert demo.artifact_path(cfg, "int8").name == "r18_os8_camvid_180x240_int8.onnx"
    assert demo.artifact_path(cfg, "fp16", (360, 480)).name == "r18_os8_camvid_180x240_frame360x480_fp16.onnx"
    assert demo.artifact_path(cfg, "fp16", suffix=".engine") == \
        tmp_path / "work" / artifact_name("r18_os8_camvid", "fp16", (180, 240), suffix=".engine")


def test_train_stage_fine_tunes_from_the_start_checkpoint(r18_checkpoint, tmp_path):
    from pspnet_trt.files import sha256_file

    cfg = DemoConfig(SAMPLE, tmp_path / "work", tmp_path / "report", train_iters=1, crop=(64, 64), batch_size=2,
                     eval_images=1, input_size=(64, 64), start_from=r18_checkpoint, lr=0.001)
    ckpt, summary = demo.train_stage(cfg, Stages(tmp_path / "work" / "stamps"))
    assert ckpt.is_file() and summary["iterations"] == 1
    assert summary["started_from"] == {"path": str(r18_checkpoint), "sha256": sha256_file(r18_checkpoint),
                                       "miou": summary["started_from"]["miou"]}
    assert 0.0 <= summary["started_from"]["miou"] <= 100.0
    config = json.loads((tmp_path / "work" / "train" / "config.json").read_text())
    assert config["load_from"] == str(r18_checkpoint) and config["lr"] == 0.001


# --- issue 14 item 22: TensorRT importable, no usable GPU ---------------------------------------------


def fake_tensorrt(monkeypatch, version: str) -> None:
    module = types.ModuleType("tensorrt")
    module.__version__ = version  # type: ignore[attr-defined]
    module.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    monkeypatch.setitem(sys.modules, "tensorrt", module)


def test_engine_stage_is_skipped_with_one_line_when_no_gpu_is_usable(monkeypatch, tmp_path, caplog):
    fake_tensorrt(monkeypatch, "10.3.0")

    def no_gpu():
        from pspnet_trt.errors import UserError

        raise UserError("no CUDA GPU is visible")

    monkeypatch.setattr("pspnet_trt.runtime.cuda.device_info", no_gpu)
    with caplog.at_level(logging.INFO, logger="pspnet_trt"):
        engines = demo.build_engines({"fp16": tmp_path / "a.onnx", "int8": tmp_path / "b.onnx"}, tmp_path)
    assert engines == []
    lines = [r.getMessage() for r in caplog.records if "engine" in r.getMessage().lower()]
    assert len(lines) == 1 and "no usable GPU" in lines[0] and "10.3.0" in lines[0]


@pytest.mark.parametrize("version,dtype", [("8.6.1", "int32"), ("10.3.0", "uint8")])
def test_engines_get_the_labels_dtype_their_tensorrt_supports(monkeypatch, version, dtype):
    fake_tensorrt(monkeypatch, version)
    monkeypatch.setattr("pspnet_trt.runtime.cuda.device_info", lambda: ("Orin", "8.7"))
    assert engine_plan() == (None, dtype)


def test_engine_plan_without_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails
    reason, dtype = engine_plan()
    assert "not installed" in reason and dtype == "uint8"


@pytest.mark.slow
def test_tiny_demo_from_a_start_checkpoint_reports_where_it_started(r18_checkpoint, tmp_path):
    """The whole demo at toy sizes: fine-tune 1 iteration, export, quantize (list relative to --data), validate."""
    cfg = DemoConfig(SAMPLE, tmp_path / "work", tmp_path / "report", input_size=(64, 64), train_iters=1, crop=(64, 64),
                     batch_size=2, eval_images=1, calib_images=2, bench_iters=1, start_from=r18_checkpoint, lr=0.001)
    rows = demo.demo(cfg)
    assert [r["precision"] for r in rows][1:4] == ["fp32", "fp16", "int8"]
    report = (tmp_path / "report" / "report.md").read_text()
    assert f"Started from {r18_checkpoint}" in report and "fine-tuned 1 iterations" in report
    assert str(SAMPLE) not in (tmp_path / "work" / "calibration.txt").read_text()
    assert sorted(p.name for p in (tmp_path / "work").glob("*.onnx")) == [
        "r18_os8_camvid_64x64_fp16.onnx", "r18_os8_camvid_64x64_fp32.onnx", "r18_os8_camvid_64x64_frame360x480_fp16.onnx",
        "r18_os8_camvid_64x64_int8.onnx"]
    stamps = sorted(p.name for p in (tmp_path / "work" / "stamps").iterdir())
    assert stamps == ["export_fp16.json", "export_fp16_bgr8.json", "export_fp32.json", "quantize.json", "train.json"]
    # `make demo DEMO_FAST=1`, then `make demo`: another iteration and image count rerun training and quantize
    # over the demo's own earlier outputs (the second run stopped at train's one-run-per-work-dir refusal, then at
    # calibrate's refusal to replace a different list)
    again = dataclasses.replace(cfg, train_iters=2, calib_images=3)
    assert [r["precision"] for r in demo.demo(again)][1:4] == ["fp32", "fp16", "int8"]
    listed = [line for line in (tmp_path / "work" / "calibration.txt").read_text().splitlines()
              if line and not line.startswith("#")]
    assert len(listed) == 3, listed
