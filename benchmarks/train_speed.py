"""Where training time goes (augmentation, model step, trainer), or with --pace: does the trainer keep its step's pace?

    python benchmarks/train_speed.py [--model r18_os8_camvid] [--crop 240x320] [--batch 8] [--iters 3] [--rounds 2]
    python benchmarks/train_speed.py --pace [--crop HxW] [--batch N] [--workers N] [--seconds 60]
    python benchmarks/train_speed.py --boundaries --rounds 3 [--workers 2]

On a GPU (issue 27's check: the trainer at >= 90 % of the channels_last step ceiling), one command:

    CAMVID_ROOT=/data/camvid python benchmarks/train_speed.py --pace --crop 360x480 --batch 16 --workers 12

--pace reports, in one run on the current device (CUDA if there is one): (1) the step-only ceiling, the trainer's
own ``step`` on random data already on the device, NCHW and channels_last, in each autocast dtype the device
offers (CUDA: float16 with the gradient scaler, bfloat16; CPU: none, bfloat16 where native); (2) the trainer's
loader alone, images/s for 0, 1, 2, 4, ... workers up to the CPU count; (3) ``pspnet_trt.train.train`` itself for
--seconds (its summary's images/s, data-wait share, workers, memory format, autocast), against the ceiling of the
same format and dtype. Writes benchmarks/results/train_speed_<host>_<date>_pace.json.

--boundaries (issue 27's CPU check: nothing lost at epoch boundaries) runs the trainer on many short epochs
(the first 16 training images, batch 8, crop 64x80, 60 iterations: 30 epochs of 2 batches) with 0 and with
--workers loader workers, alternating over --rounds, and reports each run's images/s, the medians and their
ratio (workers / none; the target is >= 0.9). Writes benchmarks/results/train_speed_<host>_<date>_boundaries.json.

The default mode, short CPU runs meant for ratios within one run (the variants are interleaved over --rounds,
medians quoted):
  1. data: ms per image of decoding, of sssegmentation's full pipeline (Resize 0.5-2, category-ratio crop, flip,
     photometric distortion) and of the light one (crop + flip), at --crop;
  2. model: seconds per SGD step of a plain loop over fixed random crops (batch --batch) in FP32, channels_last,
     bfloat16 autocast (when the CPU has avx512_bf16 / amx) and both;
  3. trainer: images/s of ``pspnet_trt.train.train`` for --iters iterations with 0 / 1 / 2 loader workers.
Data: $CAMVID_ROOT, else the committed sample. Writes benchmarks/results/train_speed_<host>_<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np
import torch
import torch.nn.functional as F
from bench_results import results_path

from pspnet_trt.bench import host
from pspnet_trt.data import dataset_for_spec
from pspnet_trt.files import write_json
from pspnet_trt.sizes import parse_size
from pspnet_trt.train import TrainConfig, train
from pspnet_trt.train.augment import train_transform
from pspnet_trt.train.trainer import build
from pspnet_trt.zoo import IGNORE_INDEX

ROOT = Path(__file__).resolve().parents[1]


def cpu_flags() -> List[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in flags if f in ("avx512_bf16", "amx_bf16", "avx512f", "avx2"))


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def worker_counts(cpus: int, asked: int) -> List[int]:
    """0, 1, 2, 4, ... up to the CPU count, and the count the trainer is run with."""
    counts, n = [0], 1
    while n <= cpus:
        counts.append(n)
        n *= 2
    return sorted(set(counts + [cpus, asked]))


def header(mode: str, data_root: Path, recipe: Dict[str, Any]) -> Dict[str, Any]:
    """What every --pace / --boundaries JSON starts with: machine, command, data and recipe."""
    return {**host(), "date": datetime.date.today().isoformat(), "command": " ".join(sys.argv), "mode": mode,
            "cpu_count": os.cpu_count() or 1, "torch": torch.__version__, "data": str(data_root), "recipe": recipe,
            "load_average_start": os.getloadavg()[0]}


def pace(args: argparse.Namespace, data_root: Path) -> Dict[str, Any]:
    """Step ceiling, loader alone, trainer: one run on the current device (see the module docstring)."""
    from pspnet_trt.train import trainer as T

    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = TrainConfig(model=args.model, data=data_root, work_dir=Path("unused"), crop=parse_size(args.crop) if args.crop
                      else (0, 0), batch_size=args.batch or 0, workers=args.workers, threads=args.threads if device == "cpu"
                      else None, pretrained="none", eval_every=0, eval_limit=1, keep=1, iters=10 ** 6,
                      limit_images=args.limit_images).resolved(device)
    cpus = os.cpu_count() or 1
    result = header("pace", data_root, {k: cfg.to_dict()[k] for k in ("model", "crop", "batch_size", "augment", "lr",
                                                                     "workers", "channels_last", "bf16", "threads",
                                                                     "limit_images")})
    result["device"] = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    tmp = Path(tempfile.mkdtemp(prefix="train_pace_"))

    # 1. step ceiling: the trainer's own step on random data already on the device
    dtypes = {"float16": torch.float16, "bfloat16": torch.bfloat16} if device == "cuda" else {"none": None}
    if device == "cpu" and T.cpu_has_bf16():
        dtypes["bfloat16"] = torch.bfloat16
    ceiling: Dict[str, float] = {}
    for cl in (False, True):
        run = T.setup(replace(cfg, work_dir=tmp / f"step_{cl}", channels_last=cl))
        g = torch.Generator().manual_seed(0)
        x = torch.randn(run.per_rank, 3, *cfg.crop, generator=g).to(run.device)
        y = torch.randint(0, cfg.spec.num_classes, (run.per_rank, *cfg.crop), generator=g).to(run.device)
        for name, dtype in dtypes.items():
            run.amp_dtype = dtype
            run.scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 and device == "cuda" else None
            for _ in range(args.warmup):
                T.step(run, x, y)
            times = []
            for _ in range(args.step_iters):
                t = time.perf_counter()
                T.step(run, x, y)  # ends with loss.item(): synchronised
                times.append(time.perf_counter() - t)
            key = f"{'channels_last' if cl else 'nchw'}_{name}"
            ceiling[key] = round(run.per_rank / statistics.median(times), 2)
            print(f"step ceiling {key}: {ceiling[key]} images/s", flush=True)
        del run, x, y
        if device == "cuda":
            torch.cuda.empty_cache()
    result["step_ceiling_images_per_s"] = ceiling

    # 2. the trainer's loader alone (its batches, its pinning), across epoch boundaries
    run = T.setup(replace(cfg, work_dir=tmp / "loader"))
    loader: Dict[str, Any] = {}
    for workers in worker_counts(cpus, args.workers):
        run.cfg = replace(cfg, workers=workers)
        with T.opencv_for_workers(workers):  # as the trainer runs its loader
            t0 = time.perf_counter()
            it = iter(T.make_loader(run, 0, 0))
            next(it)
            first = time.perf_counter() - t0
            t1 = time.perf_counter()
            for _ in range(args.loader_batches):
                next(it)
            rate = args.loader_batches * run.per_rank / (time.perf_counter() - t1)
            del it
        loader[str(workers)] = {"images_per_s": round(rate, 2), "first_batch_s": round(first, 2)}
        print(f"loader, {workers} workers: {rate:.1f} images/s (first batch after {first:.2f} s)", flush=True)
    result["loader_images_per_s"] = loader
    result["loader_batches_per_epoch"] = run.iters_per_epoch
    del run

    # 3. the trainer itself, time-bound (budget mode stop: the schedule is not squeezed, no evaluation)
    work = tmp / "train"
    train(replace(cfg, work_dir=work, max_minutes=args.seconds / 60, budget_mode="stop"))
    summary = json.loads((work / "summary.json").read_text())
    key = f"{'channels_last' if summary['channels_last'] else 'nchw'}_{summary['autocast'] or 'none'}"
    result["trainer"] = {k: summary[k] for k in ("images_per_s", "data_wait_share", "workers", "channels_last",
                                                 "autocast", "iterations", "train_seconds", "device")}
    result["trainer"]["share_of_step_ceiling"] = round(summary["images_per_s"] / ceiling[key], 3) if key in ceiling else None
    print(f"trainer: {summary['images_per_s']:.1f} images/s, data wait {100 * summary['data_wait_share']:.0f} %, "
          f"{result['trainer']['share_of_step_ceiling']} of the {key} step ceiling", flush=True)
    result["load_average_end"] = os.getloadavg()[0]
    shutil.rmtree(tmp, ignore_errors=True)
    return result


def boundaries(args: argparse.Namespace, data_root: Path) -> Dict[str, Any]:
    """Many short epochs with 0 and with --workers loader workers, alternating (see the module docstring)."""
    crop, batch = parse_size(args.crop or "64x80"), args.batch or 8
    limit = args.limit_images or 16
    result = header("boundaries", data_root, {"model": args.model, "crop": list(crop), "batch_size": batch, "iters": 60,
                                              "limit_images": limit, "threads": args.threads, "eval_every": 0})
    tmp = Path(tempfile.mkdtemp(prefix="train_boundaries_"))
    runs: Dict[str, List[Dict[str, Any]]] = {"0": [], str(args.workers): []}
    for r in range(args.rounds):
        for workers in (0, args.workers):
            work = tmp / f"w{workers}_r{r}"
            t = time.perf_counter()
            train(TrainConfig(model=args.model, data=data_root, work_dir=work, crop=crop, batch_size=batch, iters=60,
                              limit_images=limit, workers=workers, threads=args.threads, pretrained="none",
                              eval_every=0, eval_limit=2, keep=1))
            summary = json.loads((work / "summary.json").read_text())
            runs[str(workers)].append({"images_per_s": round(summary["images_per_s"], 2),
                                       "data_wait_share": summary.get("data_wait_share"),
                                       "wall_s": round(time.perf_counter() - t, 1)})
            print(f"round {r + 1}, {workers} workers: {summary['images_per_s']:.2f} images/s, data wait "
                  f"{summary.get('data_wait_share', float('nan')):.1%}", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    medians = {k: round(statistics.median(x["images_per_s"] for x in v), 2) for k, v in runs.items()}
    result.update(runs=runs, median_images_per_s=medians,
                  ratio_workers_to_none=round(medians[str(args.workers)] / medians["0"], 3),
                  load_average_end=os.getloadavg()[0])
    print(f"medians {medians}: {args.workers} workers / none = {result['ratio_workers_to_none']}", flush=True)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="r18_os8_camvid")
    ap.add_argument("--crop", help="HxW (default: 240x320; --pace: the recipe's)")
    ap.add_argument("--batch", type=int, help="default: 8; --pace: the recipe's")
    ap.add_argument("--iters", type=int, default=3, help="timed steps per variant and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (CPU)")
    ap.add_argument("--images", type=int, default=16, help="images for the data measurement")
    ap.add_argument("--skip-trainer", action="store_true")
    ap.add_argument("--pace", action="store_true", help="step ceiling, loader alone and trainer on the current device")
    ap.add_argument("--workers", type=int, default=2, help="--pace, --boundaries: the trainer's loader workers")
    ap.add_argument("--seconds", type=float, default=60, help="--pace: the trainer's run")
    ap.add_argument("--step-iters", type=int, default=20, help="--pace: timed steps per ceiling variant")
    ap.add_argument("--warmup", type=int, default=5, help="--pace: untimed steps first (cuDNN picks its kernels)")
    ap.add_argument("--loader-batches", type=int, default=40, help="--pace: timed batches per worker count")
    ap.add_argument("--limit-images", type=int, help="--pace: the first N training images")
    ap.add_argument("--boundaries", action="store_true", help="many short epochs, 0 against --workers loader workers")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    data_root = Path(os.environ.get("CAMVID_ROOT") or ROOT / "samples" / "camvid")
    if args.pace:  # threads as the trainer sets them (--threads on CPUs)
        result = pace(args, data_root)
        out = results_path("train_speed", args.out, suffix="_pace")
        write_json(out, result)
        print(out)
        return 0
    if args.boundaries:
        result = boundaries(args, data_root)
        out = results_path("train_speed", args.out, suffix="_boundaries")
        write_json(out, result)
        print(out)
        return 0
    torch.set_num_threads(args.threads)
    args.crop, args.batch = args.crop or "240x320", args.batch or 8
    crop = parse_size(args.crop)
    cfg = TrainConfig(model=args.model, data=data_root, work_dir=Path("unused"), crop=crop, batch_size=args.batch).resolved()
    spec = cfg.spec
    flags = cpu_flags()
    result: Dict[str, Any] = {**host(), "date": datetime.date.today().isoformat(), "cpu_flags": flags,
                              "model": args.model, "crop": list(crop), "batch": args.batch, "threads": args.threads,
                              "load_average_start": os.getloadavg()[0], "command": " ".join(sys.argv)}

    # 1. data
    data = dataset_for_spec(spec, data_root, spec.train_split)
    n = min(args.images, len(data))
    samples = [data[i] for i in range(n)]
    norm, base = spec.normalization, cfg.resize_base()
    data_ms: Dict[str, List[float]] = {"decode": [], "full": [], "light": []}
    for r in range(args.rounds):
        data_ms["decode"].append(1e3 * timed(lambda: [data[i] for i in range(n)]) / n)
        for kind in ("full", "light"):
            rngs = [np.random.default_rng([r, i]) for i in range(n)]
            data_ms[kind].append(1e3 * timed(lambda: [train_transform(s.image, s.label, crop, base, norm, g, kind)
                                                      for s, g in zip(samples, rngs)]) / n)
    result["data_ms_per_image"] = {k: round(statistics.median(v), 2) for k, v in data_ms.items()}
    print("data, ms per image:", result["data_ms_per_image"], flush=True)

    # 2. model step variants, interleaved
    bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
    variants = {"fp32": (False, False), "channels_last": (True, False)}
    if bf16:
        variants.update({"bf16_autocast": (False, True), "channels_last_bf16": (True, True)})
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, *crop, generator=g)
    y = torch.randint(0, spec.num_classes, (args.batch, *crop), generator=g)
    criterion = torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    models = {}
    for name, (cl, _) in variants.items():
        torch.manual_seed(0)
        m = build(cfg).train()
        if cl:
            m = m.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        models[name] = (m, torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4))

    def step(name: str) -> None:
        m, opt = models[name]
        cl, amp = variants[name]
        xi = x.to(memory_format=torch.channels_last) if cl else x
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            logits, aux = m(xi)
            loss = criterion(F.interpolate(logits, crop, mode="bilinear", align_corners=False), y)
            loss = loss + 0.4 * criterion(F.interpolate(aux, crop, mode="bilinear", align_corners=False), y)
        opt.zero_grad(set_to_none=True)
        loss.float().backward()
        opt.step()

    step_s: Dict[str, List[float]] = {name: [] for name in variants}
    for name in variants:  # warm-up
        step(name)
    for _ in range(args.rounds):
        for name in variants:
            step_s[name] += [timed(lambda: step(name)) for _ in range(args.iters)]
            print(f"  {name}: {step_s[name][-1]:.2f} s/step", flush=True)
    result["step_s"] = {k: round(statistics.median(v), 3) for k, v in step_s.items()}
    result["plain_loop_images_per_s"] = {k: round(args.batch / v, 3) for k, v in result["step_s"].items()}
    print("plain loop, s per step:", result["step_s"], flush=True)

    # 3. our trainer, end to end (same crop, batch, threads; no evaluation)
    if not args.skip_trainer:
        trainer: Dict[str, Any] = {}
        for workers in (0, 1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                train(TrainConfig(model=args.model, data=data_root, work_dir=Path(tmp), crop=crop, batch_size=args.batch,
                                  iters=args.iters * args.rounds, workers=workers, threads=args.threads, eval_every=0,
                                  eval_limit=1, keep=1))
                summary = json.loads((Path(tmp) / "summary.json").read_text())
                trainer[f"workers_{workers}"] = round(summary["images_per_s"], 3)
                print(f"trainer, {workers} workers: {trainer[f'workers_{workers}']} images/s", flush=True)
        result["trainer_images_per_s"] = trainer
    result["load_average_end"] = os.getloadavg()[0]
    out = results_path("train_speed", args.out)
    write_json(out, result)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
