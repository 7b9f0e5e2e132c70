"""Training at the GPU's pace (issue 27): one loader for the whole run whose batches stay a function of (seed, epoch,
image) and of the position a run resumes at, whatever the workers; the data wait is measured; channels_last is
the CUDA default."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pspnet_trt.train import TrainConfig, train
from pspnet_trt.train import trainer as trainer_mod

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "camvid"


def tiny(work: Path, **kw) -> TrainConfig:
    """8 images, batch 2: 4 iterations an epoch."""
    base = dict(model="r18_os8_camvid", data=SAMPLE, work_dir=work, batch_size=2, crop=(64, 64), workers=0,
                limit_images=8, eval_every=0, eval_limit=1, ppm_channels=16, aux_channels=16, threads=1)
    return TrainConfig(**{**base, **kw})


def batches(run, epoch: int, batch: int, n: int):
    it = iter(trainer_mod.make_loader(run, epoch, batch))
    return [next(it) for _ in range(n)]


def test_one_loader_serves_every_epoch_and_resumes_mid_epoch_at_the_same_batches(tmp_path):
    run = trainer_mod.setup(tiny(tmp_path / "w", epochs=3))
    assert run.iters_per_epoch == 4 and run.max_iters == 12
    whole = batches(run, 0, 0, 12)  # three epochs from one iterator
    assert len(list(trainer_mod.make_loader(run, 0, 0))) == 12  # and no more: it ends at the last iteration
    # a run resumed at batch 1 of epoch 2 (iteration 5) gets the same tensors as the uninterrupted one
    resumed = batches(run, 1, 1, 7)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(whole[5:], resumed))
    # epochs differ (order and augmentation), batches within an epoch are distinct images
    assert not torch.equal(whole[0][0], whole[4][0])
    run.cfg = tiny(tmp_path / "w", epochs=3, workers=2).resolved()  # worker processes: the same batches
    with_workers = batches(run, 0, 0, 12)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(whole, with_workers))


def test_the_workers_start_once_per_run_not_once_per_epoch(tmp_path, monkeypatch):
    made = []

    class Counting(torch.utils.data.DataLoader):
        def __iter__(self):
            made.append(self.num_workers)
            return super().__iter__()

    monkeypatch.setattr(trainer_mod, "DataLoader", Counting)
    get = trainer_mod.TrainSet.__getitem__

    def one_opencv_thread(self, key):  # in the worker: its parallelism is the workers', not an OpenCV pool
        assert torch.utils.data.get_worker_info() is not None and cv2.getNumThreads() == 1, cv2.getNumThreads()
        return get(self, key)

    monkeypatch.setattr(trainer_mod.TrainSet, "__getitem__", one_opencv_thread)
    # the parent has used OpenCV's thread pool (as the demo does before training): a forked worker calling
    # cv2.setNumThreads then deadlocked
    cv2.resize(np.zeros((2048, 2048, 3), np.uint8), (1024, 1024))
    threads = cv2.getNumThreads()
    train(tiny(tmp_path / "w", epochs=3, workers=1))
    assert made == [1]
    assert cv2.getNumThreads() == threads  # the parent's setting is given back
    summary = json.loads((tmp_path / "w" / "summary.json").read_text())
    assert summary["iterations"] == 12 and summary["workers"] == 1


def test_a_slow_input_pipeline_shows_as_data_wait(tmp_path, monkeypatch, caplog):
    """Each image takes 0.1 s more to load: with the loader in the main process, the run waits at least that
    long for data, and says so in summary.json and per epoch in metrics.jsonl."""
    get = trainer_mod.TrainSet.__getitem__

    def slow(self, key):
        time.sleep(0.1)
        return get(self, key)

    monkeypatch.setattr(trainer_mod.TrainSet, "__getitem__", slow)
    caplog.set_level(logging.INFO, logger="pspnet_trt")
    train(tiny(tmp_path / "w", iters=3, keep=0))
    summary = json.loads((tmp_path / "w" / "summary.json").read_text())
    injected = 3 * 2 * 0.1  # 3 iterations of 2 images
    assert summary["data_wait_share"] * summary["train_seconds"] >= injected - 0.05  # train_seconds has one decimal
    assert summary["data_wait_share"] <= 1
    assert summary["workers"] == 0 and summary["channels_last"] is False and summary["device"] == "cpu"
    records = [json.loads(line) for line in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["data_wait_share"] * 3 * 2 / records[0]["epoch_images_per_s"] >= injected - 1e-6
    assert any(r.message.startswith("epoch 1: loss") and "data wait" in r.message for r in caplog.records)


@pytest.mark.parametrize("model", ["r18_os8_camvid", "r50_os8_cityscapes"])
def test_channels_last_is_the_cuda_default_and_the_recipe_choice_on_cpus(model):
    cfg = TrainConfig(model=model, data=SAMPLE, work_dir="w")
    assert cfg.resolved("cuda").channels_last is True
    assert cfg.resolved("cpu").channels_last is False  # measured no gain on CPUs (train/config.py)
    assert TrainConfig(model=model, data=SAMPLE, work_dir="w", channels_last=False).resolved("cuda").channels_last is False
    assert TrainConfig(model=model, data=SAMPLE, work_dir="w", channels_last=True).resolved("cpu").channels_last is True


def test_fewer_images_than_one_batch_is_one_clear_error(tmp_path):
    from pspnet_trt.errors import UserError

    with pytest.raises(UserError, match="2 training image.* make no batch of 4: lower --batch-size"):
        trainer_mod.setup(tiny(tmp_path / "w", limit_images=2, batch_size=4, iters=1))
