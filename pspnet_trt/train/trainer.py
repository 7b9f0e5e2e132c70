"""The trainer: sssegmentation's PSPNet recipe, DDP through torchrun, exact resume.

Run alone (``pspnet-trt train``) or as ``torchrun --nproc_per_node=N -m pspnet_trt train ...``:
the same code uses NCCL on GPUs and gloo on CPUs. Checkpoints are sssegmentation's on-disk format
(``{'cur_epoch', 'cur_iter', 'optimizer', 'model'}``) plus what an exact resume needs: the batch reached
in a partly trained epoch, the torch RNG state and the budget time spent. The epoch's sample order is a
function of (seed, epoch) and each augmentation of (seed, epoch, image index), and the loader draws nothing
from the global RNG, so a run killed (or stopped by ``--budget-mode stop``) and resumed ends with the
same weights as an uninterrupted one.

One loader serves the whole run (:func:`make_loader`): its batch sampler walks epoch after epoch, so the
workers start once, prefetch across epoch boundaries and hand pinned batches (CUDA) to ``non_blocking``
copies. Each epoch logs images/s and the share of its time spent waiting for data ("data wait").

A work dir holds one run: a fresh run over another run's checkpoints is refused, and pruning deletes only
checkpoints carrying this run's id (``run_id``, kept across ``--resume``).

``train`` = :func:`setup` (processes, data, model, backbone initialisation or resume), then per epoch
:func:`train_epoch` (:func:`step` per batch), :func:`evaluate` and :func:`save` (checkpoint, ``latest``,
``best``, pruning to ``--keep``, metrics.jsonl), then :func:`_finish` (summary.json).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import cv2
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ..checkpoints import classes_record, save_checkpoint
from ..data import DatasetError, SegDataset, dataset_for_spec, default_split
from ..errors import UserError
from ..files import atomic_open, atomic_path, exclusive_lock, remove_stale_staging, write_json
from ..models import PSPNet
from ..zoo import IGNORE_INDEX, DatasetInfo
from .augment import train_transform
from .config import TrainConfig

log = logging.getLogger(__name__)
LATEST = "checkpoints-epoch-latest.pth"
LOCK = ".train.lock"  # held by the run writing in the work dir (rank 0); removed when it ends
BEST = "checkpoints-best.pth"


class TrainSet(Dataset):
    """Augmented crops, indexed by (epoch, image): a function of (seed, epoch, image) only, so a loader's
    workers need no per-epoch state."""

    def __init__(self, data: SegDataset, cfg: TrainConfig) -> None:
        self.data, self.cfg = data, cfg
        self.base = cfg.resize_base()

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
        epoch, i = key
        rng = np.random.default_rng([self.cfg.seed, epoch, i])
        sample = self.data[i]
        x, y = train_transform(sample.image, sample.label, self.cfg.crop, self.base, self.cfg.spec.normalization, rng,
                               self.cfg.augment)
        return torch.from_numpy(x), torch.from_numpy(y)


def poly_lr(base_lr: float, it: float, max_it: float, power: float = 0.9) -> float:
    """sssegmentation's PolyScheduler: (lr - min_lr) * (1 - it/max_it)^power + min_lr, min_lr = lr / 100."""
    min_lr = 0.01 * base_lr
    return (base_lr - min_lr) * (1 - min(it, max_it) / max_it) ** power + min_lr


def setup_distributed() -> Tuple[int, int, torch.device]:
    """(rank, world size, device) from torchrun's environment; a single process otherwise."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def build(cfg: TrainConfig, num_classes: Optional[int] = None) -> PSPNet:
    """The model to train, in training mode, through the model door (:func:`pspnet_trt.models.create_model`), with
    heads for ``num_classes`` (the data set's; default the zoo entry's): ``--load-from`` weights (strictly, but a
    checkpoint of another class count leaves its classifier layers out; fp16 files are cast to the model's fp32;
    optimizer and iteration fresh), else torch's initialisation (the backbone may then get ImageNet weights, see
    ``_init_backbone``)."""
    from ..models import create_model

    model = create_model(cfg.model, cfg.load_from, random_weights=not cfg.load_from, seed=None,
                         num_classes=num_classes or cfg.spec.num_classes, ppm_channels=cfg.ppm_channels,
                         aux_channels=cfg.aux_channels, new_classifier=True)
    if cfg.load_from:
        log.info("initialised from %s (sha256 %s)", cfg.load_from, model.weights.sha256)
    return model.train()


def state_hash(model: nn.Module) -> str:
    """Hash of the trainable parameters. (BatchNorm running statistics are per process on CPUs, where
    SyncBatchNorm is unavailable; DDP broadcasts rank 0's at every forward, and rank 0 saves them.)"""
    h = hashlib.sha256()
    for k, v in sorted(model.named_parameters()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def evaluate(model: nn.Module, cfg: TrainConfig, device: torch.device) -> float:
    """mIoU (points) on the evaluation split, whole images at the deploy size (the validator's path)."""
    from ..deploy import DeployInfo
    from ..metrics import SegMetrics
    from ..runtime.inference import predict_images
    from ..runtime.torch_backend import TorchBackend

    spec = cfg.spec
    data = dataset_for_spec(spec, cfg.data, cfg.eval_split)
    n = min(cfg.eval_limit or len(data), len(data))
    info = DeployInfo.from_spec(spec, output="logits", batch=None, num_classes=data.num_classes, classes=data.info)
    backend = TorchBackend(model, info, device=str(device))
    metrics = SegMetrics(data.num_classes)
    for i in range(n):
        s = data[i]
        metrics.update(predict_images(backend, [s.image], sizes=[s.label.shape[:2]])[0], s.label)
    model.train()
    return 100 * metrics.miou


# Settings that must match for --resume to continue a run (the model's shape and the recipe).
RESUME_KEYS = ("model", "ppm_channels", "aux_channels", "crop", "batch_size", "lr", "epochs", "iters", "seed",
               "limit_images", "momentum", "weight_decay", "power", "aux_weight", "augment")


@dataclass
class Run:
    """One training invocation: built by :func:`setup`, advanced by :func:`train_epoch`, saved by :func:`save`."""

    cfg: TrainConfig
    rank: int
    world: int
    device: torch.device
    trainset: TrainSet
    sampler: Optional[DistributedSampler[int]]
    per_rank: int
    iters_per_epoch: int
    max_iters: int
    epochs: int
    model: PSPNet
    ddp: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: Optional[Any]
    criterion: nn.Module
    start_epoch: int = 0  # completed epochs
    start_batch: int = 0  # batches of epoch ``start_epoch`` already trained (after a mid-epoch stop)
    it: int = 0
    elapsed_before: float = 0.0  # training seconds of earlier invocations (counted by budget mode "fit")
    epoch_losses: List[float] = field(default_factory=list)  # of the partly trained epoch, from the checkpoint
    pretrained: Optional[Dict[str, Any]] = None
    classes: Optional[DatasetInfo] = None  # what the model predicts (the data set's), recorded in every checkpoint
    history: List[Dict[str, Any]] = field(default_factory=list)
    best_miou: Optional[float] = None
    ckpt_path: Optional[Path] = None
    started: float = field(default_factory=time.monotonic)
    seen: int = 0
    train_s: float = 0.0  # seconds in the training loops (data + steps), for images/s
    wait_s: float = 0.0  # of which waiting for the loader's next batch
    stopped_early: bool = False
    # Autocast: float16 with the scaler on CUDA (an H200 steps alike in float16 and bfloat16, 713.0 vs 710.2
    # images/s in channels_last, issue 27; `benchmarks/train_speed.py --pace` measures both on the GPU at hand),
    # bfloat16 on CPUs when asked and native (see bf16), else none.
    amp_dtype: Optional[torch.dtype] = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # in every checkpoint; kept by --resume
    loader: Optional[Iterator[Any]] = None  # the run's one loader iterator (make_loader)
    loader_at: Tuple[int, int] = (-1, 0)  # the (epoch, batch) it yields next
    closing: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)  # the work dir's lock, the log file

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def work(self) -> Path:
        return self.cfg.work_dir

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def bf16(self) -> bool:
        """bfloat16 autocast: asked for (--bf16 or the recipe), on a CPU that computes it natively."""
        return bool(self.cfg.bf16) and self.device.type == "cpu" and cpu_has_bf16()

    def budget_s(self) -> Optional[float]:
        return 60 * self.cfg.max_minutes if self.cfg.max_minutes else None

    def out_of_time(self) -> bool:
        """Mode "fit" counts every invocation's training time against the budget, "stop" only this one's."""
        budget = self.budget_s()
        if budget is None:
            return False
        before = self.elapsed_before if self.cfg.budget_mode == "fit" else 0.0
        return before + self.elapsed() >= budget

    def progress(self) -> float:
        """Fraction of the poly schedule done: iterations, or (mode "fit") the budget's wall time when that
        binds first, so the decay still reaches its end on a slow machine (not bit-reproducible)."""
        done = self.it / self.max_iters
        budget = self.budget_s()
        if budget and self.cfg.budget_mode == "fit":
            done = max(done, (self.elapsed_before + self.elapsed()) / budget)
        return min(done, 1.0)


def train(cfg: TrainConfig) -> Path:
    """Train; returns the path of the last checkpoint (``checkpoints-epoch-latest.pth`` points at it)."""
    run = setup(cfg)
    with run.closing:  # the work dir's lock is held until the run ends
        return _train(run)


def _train(run: Run) -> Path:
    if run.it >= run.max_iters or (run.cfg.budget_mode == "fit" and run.out_of_time()):
        log.info("nothing to train: the run in %s is complete (iteration %d of %d%s)", run.work, run.it, run.max_iters,
                 ", its --max-minutes budget is spent" if run.it < run.max_iters else "")
        return _finish(run)
    with opencv_for_workers(run.cfg.workers):
        try:
            return _train_epochs(run)
        finally:
            run.loader = None  # its workers stop, on an error too


def _train_epochs(run: Run) -> Path:
    """The epoch loop of :func:`train`: train, evaluate, save, until the last iteration or the time budget."""
    run.started = time.monotonic()
    for epoch in range(run.start_epoch, run.epochs):
        skip = run.start_batch if epoch == run.start_epoch else 0
        before = (run.seen, run.train_s, run.wait_s)
        losses = (run.epoch_losses if skip else []) + train_epoch(run, epoch, skip)
        seen, spent, waited = (now - then for now, then in zip((run.seen, run.train_s, run.wait_s), before))
        batches = run.it - epoch * run.iters_per_epoch
        finished = run.it >= run.max_iters or (run.stopped_early and run.cfg.budget_mode == "fit")
        epoch_done = batches >= run.iters_per_epoch or run.it >= run.max_iters
        record: Dict[str, Any] = {"epoch": epoch + 1, "iter": run.it, "loss": float(np.mean(losses)) if losses else None,
                                  "lr": run.optimizer.param_groups[0]["lr"], "complete": epoch_done,
                                  "images_per_s": run.seen / max(run.train_s, 1e-9),  # the run's so far
                                  "epoch_images_per_s": seen / max(spent, 1e-9),
                                  "data_wait_share": waited / max(spent, 1e-9)}  # this epoch's (this invocation)
        if run.main and ((run.cfg.eval_every and epoch_done and (epoch + 1) % run.cfg.eval_every == 0) or finished):
            record["miou"] = evaluate(run.model, run.cfg, run.device)
            log.info("epoch %d: mIoU %.2f", epoch + 1, record["miou"])
        if run.main:
            save(run, epoch, 0 if epoch_done else batches, losses, record)
        if finished or run.stopped_early:
            if not finished:
                log.info("stopped by --max-minutes at iteration %d (epoch %d, batch %d); --resume continues there",
                         run.it, epoch + 1, batches)
            break
    return _finish(run)


def setup(cfg: TrainConfig) -> Run:
    """Processes, threads, work dir and log, data, model (pretrained backbone or a resumed checkpoint), optimizer."""
    cfg = cfg.resolved("cuda" if torch.cuda.is_available() else "cpu")  # the device setup_distributed picks
    inputs = check_inputs(cfg)  # data and start weights, before anything is written
    rank, world, device = setup_distributed()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop sizes: cuDNN times its kernels once and keeps the fastest
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    elif device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // world))
    closing = contextlib.ExitStack()
    try:
        return _setup(cfg, rank, world, device, closing, inputs)
    except BaseException:
        closing.close()
        raise


def lock_work_dir(cfg: TrainConfig, closing: contextlib.ExitStack) -> None:
    """Create the work dir and hold its lock (until ``closing`` closes), check it holds no other run
    (:func:`check_work_dir`), log to its ``train.log``, and remove the staging files a killed run left
    (``.NAME.<hex>.part``: never a checkpoint, which appears whole or not at all). A second run in the same work
    dir is refused in one line while the first lives; the kernel drops the lock of a process that dies, so a
    crash leaves none behind."""
    work = cfg.work_dir
    work.mkdir(parents=True, exist_ok=True)
    closing.enter_context(exclusive_lock(work / LOCK, busy=f"another `pspnet-trt train` writes in {work}; wait for "
                                                             "it to end, or pass another --work-dir"))
    check_work_dir(cfg)
    handler = logging.FileHandler(work / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger("pspnet_trt").addHandler(handler)
    closing.callback(handler.close)
    closing.callback(logging.getLogger("pspnet_trt").removeHandler, handler)
    remove_stale_staging(work, "a run killed while saving")


def _setup(cfg: TrainConfig, rank: int, world: int, device: torch.device, closing: contextlib.ExitStack,
           inputs: Inputs) -> Run:
    work = cfg.work_dir

    data = inputs.train
    if cfg.limit_images:
        data = data.subset(range(min(cfg.limit_images, len(data))))
    trainset = TrainSet(data, cfg)
    per_rank = max(cfg.batch_size // world, 1)
    if per_rank < 2 and not (world > 1 and device.type == "cuda"):
        raise UserError(f"batch size {cfg.batch_size} over {world} process(es) leaves {per_rank} image per process: the "
                        "PPM's 1x1-bin BatchNorm needs at least 2 (SyncBatchNorm, used on GPUs, pools across "
                        "processes); raise --batch-size")
    if len(trainset) < per_rank * world:  # not one batch an epoch: the loader would have nothing to give
        raise UserError(f"{len(trainset)} training image(s) in {cfg.data} make no batch of {per_rank * world}: lower "
                        "--batch-size or train on more images")
    # outputs only once the data and the batch are checked: a refused run leaves no work dir
    if rank == 0:
        lock_work_dir(cfg, closing)
    else:
        check_work_dir(cfg)
    sampler: Optional[DistributedSampler[int]] = (DistributedSampler(trainset, world, rank, shuffle=True, seed=cfg.seed, drop_last=True) if world > 1
               else None)
    iters_per_epoch = len(trainset) // (per_rank * world)
    max_iters = cfg.iters or cfg.epochs * iters_per_epoch
    model = inputs.model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if world > 1 and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.base_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    run = Run(cfg=cfg, rank=rank, world=world, device=device, trainset=trainset, sampler=sampler, per_rank=per_rank,
              iters_per_epoch=iters_per_epoch, max_iters=max_iters, epochs=math.ceil(max_iters / iters_per_epoch),
              model=model, ddp=model, optimizer=optimizer,
              scaler=torch.amp.GradScaler("cuda") if device.type == "cuda" else None,
              criterion=nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX), classes=data.info, closing=closing)
    run.amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16 if run.bf16 else None
    latest = work / LATEST
    load_from = getattr(cfg, "load_from", None)  # branch small's TrainConfig field
    if cfg.resume and latest.exists():
        _resume(run, latest)
    elif load_from:  # whole-model weights (--load-from) replace any backbone initialisation
        run.pretrained = {"source": "load_from", "file": str(load_from)}
        log.info("backbone initialisation: the --load-from checkpoint %s", run.pretrained["file"])
    else:
        _init_backbone(run)
    if run.main:
        write_json(work / "config.json", cfg.to_dict())
        length = f"{max_iters} iterations" + (f" at most (the {cfg.max_minutes:g}-minute --max-minutes budget may end "
                                              "the run sooner)" if cfg.max_minutes else "")
        log.info("recipe: crop %dx%d, batch %d, lr %g, %s, augmentation %s, %s, %s autocast, %d loader "
                 "workers", *cfg.crop, cfg.batch_size, cfg.lr, length, cfg.augment,
                 "channels_last" if cfg.channels_last else "NCHW", _dtype_name(run.amp_dtype) or "no", cfg.workers)
    if world > 1:
        run.ddp = nn.parallel.DistributedDataParallel(model)
    return run


@dataclass
class Inputs:
    """What a run reads, checked before it writes anything (:func:`check_inputs`)."""

    train: SegDataset
    eval: SegDataset
    model: PSPNet  # built for the data set's classes, with the start weights (--load-from) loaded


def check_inputs(cfg: TrainConfig) -> Inputs:
    """Every split the run will read (training, and the evaluation split: ``--eval-split``, default the recipe's,
    ``val`` for a folder data set) and the start weights (``--load-from``), checked in seconds, before the work
    dir, a log or a checkpoint is written: a one-line UserError naming what to fix. ``cfg`` is resolved."""
    spec = cfg.spec
    train_data = dataset_for_spec(spec, cfg.data, default_split(spec, cfg.data, "train"))
    try:
        eval_data = dataset_for_spec(spec, cfg.data, cfg.eval_split)
    except DatasetError as e:
        given = " (the default)" if cfg.eval_split == default_split(spec, cfg.data) else ""
        raise DatasetError(f"evaluation split {cfg.eval_split!r}{given}: {e}; pass --eval-split with a split "
                           "that exists") from None
    if eval_data.num_classes != train_data.num_classes:  # cannot happen in one folder, but a zoo layout may differ
        raise DatasetError(f"the {cfg.eval_split!r} split has {eval_data.num_classes} classes, the training split "
                           f"{train_data.num_classes}")
    torch.manual_seed(cfg.seed)  # the model's initial weights are a function of the seed
    return Inputs(train=train_data, eval=eval_data, model=build(cfg, train_data.num_classes))


def check_work_dir(cfg: TrainConfig) -> None:
    """A work dir holds one run: a fresh run over another run's checkpoints would take over their ``latest``
    and ``best`` and mix its epochs with theirs, so it is refused (issue 26)."""
    work = cfg.work_dir
    if cfg.resume and (work / LATEST).exists():
        return
    found = sorted(p.name for p in work.glob("checkpoints-*.pth")) if work.is_dir() else []
    if not found:
        return
    shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
    if cfg.resume:
        raise UserError(f"--resume: {work} holds checkpoints ({shown}) but no {LATEST} to continue from: restore that "
                        "link to continue the run, or pass another --work-dir to start a new one")
    raise UserError(f"{work} holds another run's checkpoints ({shown}): pass --resume to continue that run, or "
                    "another --work-dir to start a new one")


def _dtype_name(dtype: Optional[torch.dtype]) -> Optional[str]:
    return str(dtype).replace("torch.", "") if dtype is not None else None


def _init_backbone(run: Run) -> None:
    """``--pretrained``: ImageNet weights into the backbone (every rank reads the same file), or none."""
    from ..models.backbones import get_backbone
    from .pretrained import describe, load_backbone, resolve

    source = str(run.cfg.pretrained)
    path = resolve(source, run.cfg.spec.backbone, progress=run.main) if run.main or run.world == 1 else None
    if run.world > 1:  # rank 0 downloads, the others wait for it
        dist.barrier()
        path = path or resolve(source, run.cfg.spec.backbone, progress=False)
    if path is not None:
        extra = get_backbone(run.cfg.spec.backbone).pretrained_extra
        run.pretrained = load_backbone(run.model.backbone_net, path, source, extra).to_dict()
    log.info(describe(run.pretrained))


def _resume(run: Run, latest: Path) -> None:
    """Continue the run in the work dir at the iteration, batch and RNG state its latest checkpoint recorded."""
    from ..checkpoints import check_compatible

    ckpt = torch.load(latest, map_location="cpu", weights_only=True)
    saved = ckpt.get("config") or {}
    asked = {k: v for k, v in run.cfg.to_dict().items() if k in RESUME_KEYS}
    differ = [k for k in RESUME_KEYS if k in saved and saved[k] != asked.get(k)]
    if differ:
        def show(d: Dict[str, Any]) -> str:
            return ", ".join(f"{k}={_fmt(d.get(k))}" for k in differ)

        raise UserError(f"--resume: {run.work} holds a run with {show(saved)}, but this command asks for {show(asked)}: "
                        "pass the same settings to continue it, or another --work-dir to start a new run")
    check_compatible(run.model, ckpt["model"], source=f"--resume: {latest.resolve()}")
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.start_epoch, run.it = int(ckpt["cur_epoch"]), int(ckpt["cur_iter"])
    run.start_batch = int(ckpt.get("epoch_batch", 0))
    run.epoch_losses = [float(v) for v in ckpt.get("epoch_losses", [])]
    run.elapsed_before = float(ckpt.get("elapsed_s", 0.0))
    run.pretrained = ckpt.get("pretrained")
    run.run_id = str(ckpt.get("run_id") or run.run_id)  # older checkpoints carry none: theirs are never pruned
    torch.set_rng_state(ckpt["torch_rng"])
    if run.scaler is not None and "grad_scaler" in ckpt:
        run.scaler.load_state_dict(ckpt["grad_scaler"])
        torch.cuda.set_rng_state(ckpt["cuda_rng"], run.device)
    run.ckpt_path = latest.resolve()
    records = _previous(run.work, run.start_epoch)
    mious = [r["miou"] for r in records if r.get("miou") is not None]
    run.best_miou = max(mious) if mious and (run.work / BEST).exists() else None
    log.info("resumed from %s: epoch %d, batch %d, iteration %d", latest.resolve().name, run.start_epoch + 1,
             run.start_batch, run.it)


def _fmt(value: Any) -> str:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return f"{value[0]}x{value[1]}"
    return str(value)


def epoch_order(run: Run, epoch: int) -> List[int]:
    """This rank's sample indices for ``epoch``, in order: a function of (seed, epoch) only."""
    if run.sampler is not None:
        run.sampler.set_epoch(epoch)
        return list(run.sampler)
    g = torch.Generator().manual_seed(run.cfg.seed * 1000 + epoch)
    return torch.randperm(len(run.trainset), generator=g).tolist()


class RunBatches(Sampler[List[Tuple[int, int]]]):
    """``count`` batches of (epoch, image) keys from batch ``batch`` of ``epoch`` on: epoch after epoch in the
    order ``order(epoch)`` gives, cut into ``per_epoch`` batches of ``size``."""

    def __init__(self, order: Callable[[int], List[int]], size: int, per_epoch: int, epoch: int, batch: int,
                 count: int) -> None:
        self.order, self.size, self.per_epoch = order, size, per_epoch
        self.epoch, self.batch, self.count = epoch, batch, max(count, 0)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        epoch, batch, left = self.epoch, self.batch, self.count
        while left > 0:
            order = self.order(epoch)
            for b in range(batch, min(self.per_epoch, batch + left)):
                yield [(epoch, i) for i in order[b * self.size:(b + 1) * self.size]]
                left -= 1
            epoch, batch = epoch + 1, 0


def make_loader(run: Run, epoch: int, batch: int = 0) -> DataLoader:
    """The run's loader from batch ``batch`` of ``epoch`` to its last iteration.

    One iterator of it serves the whole run: its ``--workers`` processes start once (they persist across
    epochs) and keep ``prefetch_factor`` batches each ahead, across epoch boundaries; on CUDA the batches come in
    pinned memory, so the trainer's ``non_blocking`` copies do not block. Batches are a function of (seed,
    epoch, image) whatever the workers, so a resumed run sees what an uninterrupted one saw. The loader's own
    generator (only for the workers' base seed) keeps it from drawing on the global RNG (dropout's). Iterate it
    inside :func:`opencv_for_workers` (as :func:`train` does)."""
    done = epoch * run.iters_per_epoch + batch
    sampler = RunBatches(lambda e: epoch_order(run, e), run.per_rank, run.iters_per_epoch, epoch, batch,
                         run.max_iters - done)
    workers = run.cfg.workers
    return DataLoader(run.trainset, batch_sampler=sampler, num_workers=workers, pin_memory=run.device.type == "cuda",
                      prefetch_factor=2 if workers else None, worker_init_fn=_yield_to_the_step if workers else None,
                      generator=torch.Generator().manual_seed(run.cfg.seed * 1000 + epoch))


@contextlib.contextmanager
def opencv_for_workers(workers: int) -> Iterator[None]:
    """With loader workers, OpenCV on one thread while the block runs (the setting is given back after).

    Set in the parent, so the workers it forks inherit it: each would otherwise start an OpenCV pool of one
    thread per core (12 workers on 16 cores: 192 threads), and the parallelism is the workers'. Loader alone, 2
    workers, full augmentation at 360x480 on 2 cores, medians of 3 alternating rounds: 92.0 images/s against
    82.0 with OpenCV's default pool. (Not in the worker: a forked worker calling cv2.setNumThreads after the
    parent used OpenCV's pool deadlocks.)"""
    before = cv2.getNumThreads()
    if workers:
        cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def _yield_to_the_step(worker: int) -> None:
    """A loader worker takes the lowest CPU priority, so it runs on the cores the training step leaves idle instead
    of preempting the step's threads. On 2 busy cores (r18 at 64x80, batch 8, 2 workers), images/s in two rounds:
    2.67 / 2.87 at nice 19, 2.29 / 2.38 at nice 5, 2.24 / 2.43 without, 2.67 / 2.16 with no workers. With a GPU
    the step leaves the cores idle and this changes nothing. (OpenCV's threads are set in the parent: see
    :func:`opencv_for_workers`.)"""
    os.nice(19)


def train_epoch(run: Run, epoch: int, skip: int = 0) -> List[float]:
    """Train ``epoch`` from its batch ``skip`` until its end, the last iteration or the time budget; the losses.

    Batches come from the run's one loader (:func:`make_loader`, made on the first call); the time spent
    waiting for them is counted in ``run.wait_s``."""
    from tqdm import tqdm

    cfg, device = run.cfg, run.device
    if run.loader is None or run.loader_at != (epoch, skip):
        run.loader = iter(make_loader(run, epoch, skip))
        run.loader_at = (epoch, skip)
    run.ddp.train()
    losses: List[float] = []
    bar = tqdm(desc=f"epoch {epoch + 1}/{run.epochs}", disable=not run.main, leave=False, initial=skip,
               total=run.iters_per_epoch)
    batch = skip
    t0 = time.perf_counter()
    while batch < run.iters_per_epoch and run.it < run.max_iters:
        t = time.perf_counter()
        try:
            images, labels = next(run.loader)
        except DatasetError as e:  # from a loader worker: its message, not the worker's traceback
            raise DatasetError(worker_message(e)) from None
        run.wait_s += time.perf_counter() - t
        batch += 1
        run.loader_at = (epoch, batch) if batch < run.iters_per_epoch else (epoch + 1, 0)
        lr = poly_lr(cfg.base_lr, run.progress(), 1.0, cfg.power)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        losses.append(step(run, images.to(device, non_blocking=True), labels.to(device, non_blocking=True)))
        run.it += 1
        run.seen += images.shape[0] * run.world
        bar.update()
        bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{lr:.2e}")
        if _agree(run, run.out_of_time()):
            run.stopped_early = True
            break
    run.train_s += time.perf_counter() - t0
    bar.close()
    return losses


def worker_message(error: Exception) -> str:
    """The one-line message of an error raised in a loader worker: torch re-raises it in the trainer as "Caught
    DatasetError in DataLoader worker process 0. Original Traceback ..." with the message on its last line."""
    text = str(error)
    if "Original Traceback" not in text:
        return text
    last = next((line for line in reversed(text.splitlines()) if line.strip()), text)
    name = f"{type(error).__module__}.{type(error).__qualname__}: "
    return last[len(name):] if last.startswith(name) else last.split(": ", 1)[-1]


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (avx512_bf16 or AMX); elsewhere bf16 autocast is slower."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def step(run: Run, images: torch.Tensor, labels: torch.Tensor) -> float:
    """One SGD step on (main + aux_weight * auxiliary) cross-entropy; returns the loss.

    Mixed precision: ``run.amp_dtype`` (float16 on GPUs, with the gradient scaler when there is one; bfloat16 on
    CPUs when asked and native)."""
    if run.cfg.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.autocast(run.device.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
        logits, aux = run.ddp(images)
        size = labels.shape[-2:]
        loss = run.criterion(F.interpolate(logits, size, mode="bilinear", align_corners=False), labels)
        loss = loss + run.cfg.aux_weight * run.criterion(F.interpolate(aux, size, mode="bilinear", align_corners=False),
                                                         labels)
    run.optimizer.zero_grad(set_to_none=True)
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        loss.backward()
        run.optimizer.step()
    return float(loss.item())


def _agree(run: Run, flag: bool) -> bool:
    """``flag`` of rank 0 on every rank, so that all processes stop after the same iteration."""
    if run.world == 1:
        return flag
    t = torch.tensor([int(flag)], device=run.device)
    dist.broadcast(t, 0)
    return bool(t.item())


def save(run: Run, epoch: int, epoch_batch: int, losses: List[float], record: Dict[str, Any]) -> None:
    """Checkpoint (with what an exact resume needs), ``latest`` link, ``best``, pruning, metrics.jsonl."""
    work, cfg = run.work, run.cfg
    path = work / f"checkpoints-epoch-{epoch + 1}.pth"
    extra: Dict[str, Any] = {}
    if run.pretrained:
        extra["pretrained"] = run.pretrained
    if run.classes is not None:  # export, validate and predict name and colour the classes from it
        extra["classes"] = classes_record(run.classes)
    if "miou" in record:
        extra["miou"] = record["miou"]
    if run.scaler is not None:  # CUDA: the loss scale and the GPU's RNG (dropout) continue where they were
        extra["grad_scaler"] = run.scaler.state_dict()
        extra["cuda_rng"] = torch.cuda.get_rng_state(run.device)
    save_checkpoint(path, run.model.state_dict(), cur_epoch=epoch if epoch_batch else epoch + 1, cur_iter=run.it,
                    epoch_batch=epoch_batch, epoch_losses=losses if epoch_batch else [],
                    elapsed_s=run.elapsed_before + run.elapsed(), optimizer=run.optimizer.state_dict(),
                    torch_rng=torch.get_rng_state(), config={k: v for k, v in cfg.to_dict().items() if k != "extra"},
                    run_id=run.run_id, **extra)
    run.ckpt_path = path
    _link_latest(work / LATEST, path)
    miou = record.get("miou")
    if cfg.eval_every and miou is not None and (run.best_miou is None or miou > run.best_miou):
        run.best_miou = miou
        with atomic_path(work / BEST) as tmp:
            shutil.copyfile(path, tmp)
        log.info("best so far (mIoU %.2f): %s", miou, BEST)
    prune(work, cfg.keep, run.run_id)
    with atomic_open(work / "metrics.jsonl", "w") as f:
        run.history.append(record)
        f.write("".join(json.dumps(r) + "\n" for r in _previous(work, run.start_epoch) + run.history))
    log.info("epoch %d%s: loss %.4f, %.2f images/s, data wait %.0f %%", epoch + 1,
             f" (to batch {epoch_batch})" if epoch_batch else "", record["loss"] or float("nan"),
             record["epoch_images_per_s"], 100 * record["data_wait_share"])


def prune(work: Path, keep: int, run_id: str) -> None:
    """Delete all but the newest ``keep`` epoch checkpoints of the run ``run_id``: a file without that id (another
    run's, an older version's, anything else) is never deleted, nor latest's target; ``best`` is its own file."""
    if keep <= 0:
        return
    ours = []
    for p in work.glob("checkpoints-epoch-*.pth"):
        number = p.name[len("checkpoints-epoch-"):-len(".pth")]
        if number.isdigit() and not p.is_symlink() and checkpoint_run_id(p) == run_id:
            ours.append((int(number), p))
    target = (work / LATEST).resolve()
    for _, p in sorted(ours)[:-keep]:
        if p.resolve() != target:
            p.unlink()
            log.debug("removed %s (--keep %d)", p.name, keep)


def checkpoint_run_id(path: Path) -> Optional[str]:
    """The ``run_id`` a checkpoint of this trainer carries (tensors memory-mapped, not read); None for any other."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a (zip) torch file: not ours
        return None
    run_id = ckpt.get("run_id") if isinstance(ckpt, dict) else None
    return run_id if isinstance(run_id, str) else None


def _finish(run: Run) -> Path:
    """summary.json (rank 0), the per-rank parameter hashes under DDP, the curve; the last checkpoint's path.

    ``images_per_s``: images over the training loops' time (data waits included) of this invocation;
    ``data_wait_share``: the part of that time spent waiting for the loader; ``workers``: its processes."""
    summary: Dict[str, Any] = {"iterations": run.it, "seconds": round(run.elapsed(), 1),
                               "train_seconds": round(run.train_s, 1),
                               "images_per_s": run.seen / max(run.train_s, 1e-9),
                               "data_wait_share": round(run.wait_s / max(run.train_s, 1e-9), 4),
                               "workers": run.cfg.workers, "device": str(run.device),
                               "channels_last": bool(run.cfg.channels_last), "autocast": _dtype_name(run.amp_dtype),
                               "stopped_early": run.stopped_early, "world_size": run.world,
                               "pretrained": run.pretrained, "bf16_autocast": run.bf16}
    if run.world > 1:
        hashes: List[Optional[str]] = [None] * run.world
        dist.all_gather_object(hashes, state_hash(run.model))
        summary["rank_parameter_sha256"] = hashes
        dist.destroy_process_group()
    if run.main:
        import resource

        summary["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        records = _previous(run.work, run.start_epoch) + run.history
        summary["final_miou"] = next((r["miou"] for r in reversed(records) if "miou" in r), None)
        summary["best_miou"] = run.best_miou
        write_json(run.work / "summary.json", summary)
        if (run.work / "metrics.jsonl").is_file():
            _plot(run.work)
    return run.ckpt_path or run.work / LATEST  # other ranks write no checkpoints


def _previous(work: Path, start_epoch: int) -> List[Dict[str, Any]]:
    """Records of epochs before a resume (kept in metrics.jsonl)."""
    path = work / "metrics.jsonl"
    if not start_epoch or not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r["epoch"] <= start_epoch]


def _link_latest(latest: Path, target: Path) -> None:
    """Atomically point ``checkpoints-epoch-latest.pth`` at ``target`` (a relative symlink, like sssegmentation)."""
    tmp = latest.with_name(latest.name + ".tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target.name, tmp)
    os.replace(tmp, latest)


def _plot(work: Path) -> None:
    """``curve.png``: loss per epoch, and mIoU where evaluated."""
    from ..reporting import pyplot, save_png

    try:
        plt = pyplot()
    except ImportError:
        return
    records = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines() if line.strip()]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["epoch"] for r in records], [r["loss"] for r in records], "o-", label="loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    evals = [r for r in records if "miou" in r]
    if evals:
        ax2 = ax.twinx()
        ax2.plot([r["epoch"] for r in evals], [r["miou"] for r in evals], "s-", color="tab:green", label="mIoU")
        ax2.set_ylabel("mIoU %")
    ax.set_title("training")
    fig.tight_layout()
    save_png(fig, work / "curve.png")
