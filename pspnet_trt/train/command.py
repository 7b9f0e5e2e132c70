"""``pspnet-trt train`` (also ``torchrun --nproc_per_node=N -m pspnet_trt train ...``)."""

from __future__ import annotations

import argparse
import json
import pathlib

from ..values import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a zoo model (sssegmentation recipe; DDP under torchrun)")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True,
                   help="dataset root in the zoo entry's layout, or your own folder data set (classes.json, "
                        "images/<split>/, masks/<split>/): the heads are built for its classes")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, default=0, help="default: the recipe's")
    length.add_argument("--iters", type=int, help="total iterations (instead of epochs)")
    p.add_argument("--batch-size", type=int, default=0, help="total over all processes (default: the recipe's)")
    p.add_argument("--lr", type=float, default=None,
                   help="base learning rate, used as given (0 included; default: the recipe's, 0.01 for every zoo entry)")
    p.add_argument("--crop", help="HxW (default: the recipe's)")
    p.add_argument("--augment", choices=("full", "light"),
                   help="full = sssegmentation's pipeline (resize 0.5-2, crop, flip, photometric), light = crop + flip; "
                        "default: the recipe's (see train/config.py)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bfloat16 autocast on CPUs with native bf16 (avx512_bf16/AMX); default: the recipe's")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels_last memory format for the model and batches; default: on for CUDA (x2 a step on an "
                        "H200), the recipe's on CPUs (off)")
    p.add_argument("--workers", type=int, default=2,
                   help="loader processes, started once per run (default 2); raise it when the per-epoch log shows a "
                        "large data wait")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", required=True)
    p.add_argument("--resume", action="store_true",
                   help="continue from work-dir/checkpoints-epoch-latest.pth (a fresh run over another run's "
                        "checkpoints is refused)")
    p.add_argument("--max-minutes", type=float, help="stop cleanly (with a checkpoint) after this training wall time")
    p.add_argument("--budget-mode", choices=("fit", "stop"), default="fit",
                   help="fit (default): the poly decay ends at the --max-minutes budget when that comes before the last "
                        "iteration, and the budget counts across --resume; stop: the budget only stops this invocation, "
                        "the schedule stays by iterations, and --resume continues exactly (a job time limit)")
    p.add_argument("--keep", type=int, default=3,
                   help="epoch checkpoints kept besides latest and best (default 3; 0 keeps all)")
    p.add_argument("--pretrained", metavar="auto|none|PATH|URL",
                   help="backbone initialisation: auto = sssegmentation's ImageNet v1c ResNet (downloaded once), none = "
                        "from scratch, or a file or URL; default: auto for the published configs, none for r18_os8_camvid")
    p.add_argument("--limit-images", type=int, help="use the first N training images")
    p.add_argument("--eval-every", type=int, default=10, help="evaluate every N epochs (0: at the end only)")
    p.add_argument("--eval-limit", type=int, help="evaluation images")
    p.add_argument("--eval-split", help="the split evaluated (and best checkpoint picked) on; default: the recipe's "
                                        "(a folder data set: val)")
    p.add_argument("--threads", type=positive_int, help="torch threads per process")
    p.add_argument("--load-from", help="start from this checkpoint's weights (strict; fp16 cast to fp32) with a fresh "
                                       "optimizer at iteration 0, e.g. to fine-tune; a checkpoint of another class "
                                       "count loads all but its classifier layers; --resume takes precedence")
    p.add_argument("--ppm-channels", type=int, help=argparse.SUPPRESS)  # width overrides for tests
    p.add_argument("--aux-channels", type=int, help=argparse.SUPPRESS)
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from ..deps import require

    require("torch", "training")
    from pathlib import Path

    from ..sizes import parse_size
    from . import TrainConfig, train

    cfg = TrainConfig(
        model=args.model, data=args.data, work_dir=args.work_dir, epochs=args.epochs, iters=args.iters,
        batch_size=args.batch_size, lr=args.lr, crop=parse_size(args.crop) if args.crop else (0, 0),
        workers=args.workers, seed=args.seed, resume=args.resume, max_minutes=args.max_minutes,
        budget_mode=args.budget_mode, keep=args.keep, pretrained=args.pretrained, augment=args.augment or "",
        bf16=args.bf16, channels_last=args.channels_last,
        limit_images=args.limit_images, eval_every=args.eval_every, eval_limit=args.eval_limit,
        eval_split=args.eval_split, threads=args.threads,
        ppm_channels=args.ppm_channels, aux_channels=args.aux_channels,
        load_from=Path(args.load_from) if args.load_from else None,
    )
    last = train(cfg)
    from .pretrained import describe

    summary = pathlib.Path(cfg.work_dir) / "summary.json"
    if summary.is_file():
        print(describe(json.loads(summary.read_text()).get("pretrained")))
    print(last)
    return 0
