"""Subcommands that belong to no single stage: ``zoo`` and ``download``."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help="list the model zoo with published mIoU")
    p.set_defaults(func=_zoo)
    p = sub.add_parser("download", help="download a zoo checkpoint into the cache ($PSPNET_TRT_CACHE; mirror: $PSPNET_TRT_MODEL_BASE_URL)")
    p.add_argument("--model", required=True, help="zoo name, e.g. r50_os8_cityscapes")
    p.add_argument("--log", action="store_true", help="also fetch the published training log next to the checkpoint")
    p.set_defaults(func=_download)


def _zoo(args: argparse.Namespace) -> int:
    from .zoo import format_table

    print(format_table())
    return 0


def _download(args: argparse.Namespace) -> int:
    from .checkpoints import fetch_checkpoint, fetch_training_log

    print(fetch_checkpoint(args.model))
    if args.log:
        print(fetch_training_log(args.model))
    return 0
