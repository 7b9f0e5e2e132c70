"""The trainer: sssegmentation's PSPNet recipe, DDP through torchrun, exact resume.

Run alone (``pspnet-trt train``) or as ``torchrun --nproc_per_node=N -m pspnet_trt train ...``:
the same code uses NCCL on GPUs and gloo on CPUs. Checkpoints are sssegmentation's on-disk format
(``{'cur_epoch', 'cur_iter', 'optimizer', 'model'}``) plus what an exact resume needs (the
scheduler position and the torch RNG state); augmentation randomness is derived from
(seed, epoch, image index), so a run killed mid-epoch and resumed ends with the same weights as
an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from ..checkpoints import save_checkpoint
from ..data import SegDataset, dataset_for_spec
from ..files import atomic_open, write_json
from ..models import PSPNet
from ..zoo import IGNORE_INDEX
from .augment import train_transform
from .config import TrainConfig

log = logging.getLogger(__name__)
LATEST = "checkpoints-epoch-latest.pth"


class TrainSet(Dataset):
    """Augmented crops; sample i of epoch e always gets the same augmentation for a seed."""

    def __init__(self, data: SegDataset, cfg: TrainConfig) -> None:
        self.data, self.cfg = data, cfg
        self.base = cfg.resize_base()
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.cfg.seed, self.epoch, i])
        sample = self.data[i]
        x, y = train_transform(sample.image, sample.label, self.cfg.crop, self.base, self.cfg.spec.normalization, rng)
        return torch.from_numpy(x), torch.from_numpy(y)


def poly_lr(base_lr: float, it: float, max_it: float, power: float = 0.9) -> float:
    """sssegmentation's PolyScheduler: (lr - min_lr) * (1 - it/max_it)^power + min_lr, min_lr = lr / 100."""
    min_lr = 0.01 * base_lr
    return (base_lr - min_lr) * (1 - min(it, max_it) / max_it) ** power + min_lr


def progress(it: int, max_iters: int, started: float, budget_s: Optional[float]) -> float:
    """Fraction of the schedule done: iterations, or wall time when a --max-minutes budget binds first
    (so the poly decay still reaches its end on a slow machine; such a run is not bit-reproducible)."""
    done = it / max_iters
    if budget_s:
        done = max(done, (time.monotonic() - started) / budget_s)
    return min(done, 1.0)


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


def build(cfg: TrainConfig) -> PSPNet:
    spec = cfg.spec
    model = PSPNet(num_classes=spec.num_classes, depth=spec.depth, output_stride=spec.output_stride,
                   ppm_channels=cfg.ppm_channels or spec.ppm_channels, aux_channels=cfg.aux_channels or spec.aux_channels,
                   dropout=spec.dropout, pool_scales=spec.pool_scales)
    if cfg.load_from:  # weights only, strictly (fp16 files are cast to the model's fp32); optimizer and iteration fresh
        from ..checkpoints import load_checkpoint
        from ..files import sha256_file

        load_checkpoint(model, cfg.load_from)
        log.info("initialised from %s (sha256 %s)", cfg.load_from, sha256_file(cfg.load_from))
    return model


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
    from ..runtime.torch_backend import TorchBackend
    from ..validate import predict_whole

    spec = cfg.spec
    data = dataset_for_spec(spec, cfg.data, cfg.eval_split)
    n = min(cfg.eval_limit or len(data), len(data))
    info = DeployInfo.from_spec(spec, output="logits", batch=None)
    backend = TorchBackend(model, info, device=str(device))
    metrics = SegMetrics(spec.num_classes)
    for i in range(n):
        s = data[i]
        metrics.update(predict_whole(backend, s.image, s.label.shape[:2]), s.label)
    model.train()
    return 100 * metrics.miou


def train(cfg: TrainConfig) -> Path:
    """Train; returns the path of the last checkpoint (``checkpoints-epoch-latest.pth`` points at it)."""
    cfg = cfg.resolved()
    rank, world, device = setup_distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    elif device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // world))
    work = cfg.work_dir
    main = rank == 0
    if main:
        work.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(work / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logging.getLogger("pspnet_trt").addHandler(handler)
        write_json(work / "config.json", cfg.to_dict())
    torch.manual_seed(cfg.seed)

    data = dataset_for_spec(cfg.spec, cfg.data, cfg.spec.train_split)
    if cfg.limit_images:
        data = data.subset(range(min(cfg.limit_images, len(data))))
    trainset = TrainSet(data, cfg)
    per_rank = max(cfg.batch_size // world, 1)
    if per_rank < 2 and not (world > 1 and device.type == "cuda"):
        from ..errors import UserError

        raise UserError(f"batch size {cfg.batch_size} over {world} process(es) leaves {per_rank} image per process: the "
                        "PPM's 1x1-bin BatchNorm needs at least 2 (SyncBatchNorm, used on GPUs, pools across "
                        "processes); raise --batch-size")
    sampler = (DistributedSampler(trainset, world, rank, shuffle=True, seed=cfg.seed, drop_last=True) if world > 1
               else None)
    iters_per_epoch = max(len(trainset) // (per_rank * world), 1)
    max_iters = cfg.iters or cfg.epochs * iters_per_epoch
    epochs = math.ceil(max_iters / iters_per_epoch)

    model = build(cfg).to(device)
    if world > 1 and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    start_epoch, it = 0, 0
    latest = work / LATEST
    if cfg.resume and latest.exists():
        ckpt = torch.load(latest, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch, it = int(ckpt["cur_epoch"]), int(ckpt["cur_iter"])
        torch.set_rng_state(ckpt["torch_rng"])
        log.info("resumed from %s: epoch %d, iteration %d", latest.resolve().name, start_epoch, it)
    ddp = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
    criterion = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)

    from tqdm import tqdm

    budget = 60 * cfg.max_minutes if cfg.max_minutes else None
    started = time.monotonic()
    deadline = started + budget if budget else None
    history: List[Dict[str, Any]] = []
    ckpt_path: Optional[Path] = latest.resolve() if latest.exists() else None
    t0, seen = time.perf_counter(), 0
    stopped_early = False
    for epoch in range(start_epoch, epochs):
        trainset.epoch = epoch
        if sampler is not None:
            sampler.set_epoch(epoch)
        loader = DataLoader(trainset, batch_size=per_rank, drop_last=True, num_workers=cfg.workers,
                            sampler=sampler or RandomSampler(trainset, generator=torch.Generator().manual_seed(
                                cfg.seed * 1000 + epoch)), persistent_workers=False)
        ddp.train()
        losses = []
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", disable=not main, leave=False)
        for images, labels in bar:
            if it >= max_iters:
                break
            lr = poly_lr(cfg.lr, progress(it, max_iters, started, budget), 1.0, cfg.power)
            for group in optimizer.param_groups:
                group["lr"] = lr
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with torch.autocast(device.type, enabled=scaler is not None):
                logits, aux = ddp(images)
                size = labels.shape[-2:]
                loss = criterion(F.interpolate(logits, size, mode="bilinear", align_corners=False), labels)
                loss = loss + cfg.aux_weight * criterion(F.interpolate(aux, size, mode="bilinear", align_corners=False),
                                                         labels)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            it += 1
            seen += images.shape[0] * world
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{lr:.2e}")
            if deadline is not None and time.monotonic() > deadline:
                stopped_early = True
                break
        epoch_done = not stopped_early
        record: Dict[str, Any] = {"epoch": epoch + 1, "iter": it, "loss": float(np.mean(losses)) if losses else None,
                                  "lr": optimizer.param_groups[0]["lr"], "complete": epoch_done,
                                  "images_per_s": seen / (time.perf_counter() - t0)}
        last = it >= max_iters or stopped_early
        if main and ((cfg.eval_every and (epoch + 1) % cfg.eval_every == 0) or last):
            record["miou"] = evaluate(model, cfg, device)
            log.info("epoch %d: mIoU %.2f", epoch + 1, record["miou"])
        if main:
            ckpt_path = work / f"checkpoints-epoch-{epoch + 1}.pth"
            save_checkpoint(ckpt_path, model.state_dict(), cur_epoch=epoch + 1 if epoch_done else epoch, cur_iter=it,
                            optimizer=optimizer.state_dict(), torch_rng=torch.get_rng_state(),
                            config={k: v for k, v in cfg.to_dict().items() if k != "extra"})
            _link_latest(latest, ckpt_path)
            with atomic_open(work / "metrics.jsonl", "w") as f:
                history.append(record)
                f.write("".join(json.dumps(r) + "\n" for r in _previous(work, start_epoch) + history))
            log.info("epoch %d: loss %.4f, %.2f images/s", epoch + 1, record["loss"] or float("nan"),
                     record["images_per_s"])
        if last:
            break
    summary: Dict[str, Any] = {"iterations": it, "seconds": round(time.perf_counter() - t0, 1),
                               "images_per_s": seen / max(time.perf_counter() - t0, 1e-9),
                               "stopped_early": stopped_early, "world_size": world}
    if world > 1:
        hashes: List[Optional[str]] = [None] * world
        dist.all_gather_object(hashes, state_hash(model))
        summary["rank_parameter_sha256"] = hashes
        dist.destroy_process_group()
    if main:
        import resource

        summary["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        summary["final_miou"] = next((r["miou"] for r in reversed(history) if "miou" in r), None)
        write_json(work / "summary.json", summary)
        _plot(work)
    return ckpt_path or latest  # other ranks write no checkpoints


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
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    from ..files import atomic_path

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
    with atomic_path(work / "curve.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
