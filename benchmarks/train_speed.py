"""Where training time goes on the CPU: augmentation cost, model step variants, our trainer vs a plain loop.

    python benchmarks/train_speed.py [--model r18_os8_camvid] [--crop 240x320] [--batch 8] [--iters 3] [--rounds 2]

Short runs meant for ratios within one run (the variants are interleaved over --rounds, medians quoted):
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
import os
import statistics
import sys
import tempfile
import time
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="r18_os8_camvid")
    ap.add_argument("--crop", default="240x320")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=3, help="timed steps per variant and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=16, help="images for the data measurement")
    ap.add_argument("--skip-trainer", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    crop = parse_size(args.crop)
    data_root = Path(os.environ.get("CAMVID_ROOT") or ROOT / "samples" / "camvid")
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
                import json

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
