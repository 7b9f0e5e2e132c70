"""Train r18_os8_camvid from scratch for a wall-clock budget; test mIoU, iterations, images/s, peak RSS.

    CAMVID_ROOT=/data/camvid python benchmarks/train_budget.py --minutes 45 [--limit N] [--work-dir D]
        [--crop HxW --batch-size B --lr LR --augment full|light --bf16|--no-bf16 --threads T --workers W]

The recipe is the trainer's (``train/config.py``: the CPU override of r18_os8_camvid) unless overridden;
the poly decay is fitted into the budget (``--budget-mode fit``), from scratch (``--pretrained none``).
The mIoU is the trainer's final evaluation, which is the validator's path (whole images at the deploy
size) on the zoo entry's evaluation split: all 233 CamVid test images unless --limit is given (a JSON
with a limit is a smoke test, not a figure). Writes benchmarks/results/train_budget_<host>_<date>_<M>min.json
(or --out). Nothing else should run on the machine during a run whose figure is quoted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

from bench_results import results_path

from pspnet_trt.bench import host
from pspnet_trt.files import write_json
from pspnet_trt.sizes import parse_size
from pspnet_trt.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="r18_os8_camvid")
    ap.add_argument("--minutes", type=float, required=True, help="training wall-clock budget")
    ap.add_argument("--data", default=os.environ.get("CAMVID_ROOT"), help="dataset root (default: $CAMVID_ROOT)")
    ap.add_argument("--limit", type=int, help="evaluate on the first N test images only (smoke test)")
    ap.add_argument("--work-dir", type=Path)
    ap.add_argument("--crop")
    ap.add_argument("--batch-size", type=int, default=0)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--augment", choices=("full", "light"))
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if not args.data:
        ap.error("pass --data or set CAMVID_ROOT (the full CamVid: the figure is on its 233 test images)")
    date = datetime.date.today().isoformat()
    work = args.work_dir or ROOT / "work" / f"train_budget_{date}_{args.minutes:g}min"
    cfg = TrainConfig(model=args.model, data=Path(args.data), work_dir=work, epochs=1000, max_minutes=args.minutes,
                      budget_mode="fit", pretrained="none", eval_every=0, eval_limit=args.limit,
                      crop=parse_size(args.crop) if args.crop else (0, 0), batch_size=args.batch_size, lr=args.lr,
                      augment=args.augment or "", bf16=args.bf16, threads=args.threads, workers=args.workers,
                      seed=args.seed, keep=1)
    t = time.perf_counter()
    checkpoint = train(cfg)
    wall = time.perf_counter() - t
    summary = json.loads((work / "summary.json").read_text())
    used = json.loads((work / "config.json").read_text())
    result = {
        **host(), "date": date, "command": " ".join(sys.argv), "budget_minutes": args.minutes,
        "test_miou": summary["final_miou"], "test_images": args.limit or "all",
        "iterations": summary["iterations"], "images_per_s": round(summary["images_per_s"], 3),
        "train_seconds": summary["train_seconds"], "wall_seconds_with_evaluation": round(wall, 1),
        "peak_rss_mb": round(summary["peak_rss_mb"], 1), "bf16_autocast": summary["bf16_autocast"],
        "recipe": {k: used[k] for k in ("crop", "batch_size", "lr", "augment", "bf16", "channels_last", "threads",
                                        "workers", "seed", "pretrained")},
        "checkpoint": str(checkpoint), "load_average_end": os.getloadavg()[0],
        "smoke_test": bool(args.limit),
    }
    out = results_path("train_budget", args.out, suffix=f"_{args.minutes:g}min")
    write_json(out, result)
    print(json.dumps(result, indent=2))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
