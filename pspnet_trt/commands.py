"""Subcommands that belong to no single stage: ``zoo``, ``download`` and ``info``."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help="list the model zoo with published mIoU")
    p.set_defaults(func=_zoo)
    p = sub.add_parser("download", help="download a zoo checkpoint into the cache ($PSPNET_TRT_CACHE; mirror: $PSPNET_TRT_MODEL_BASE_URL)")
    p.add_argument("--model", required=True, help="zoo name, e.g. r50_os8_cityscapes")
    p.add_argument("--log", action="store_true", help="also fetch the published training log next to the checkpoint")
    p.set_defaults(func=_download)
    p = sub.add_parser("info", help="an artifact's metadata and validation record (.onnx, or engine + manifest)",
                       description="Prints what an .onnx file or an engine says about itself (zoo model, input size, "
                                   "normalisation, classes, precision, checkpoint; for an engine the build facts of "
                                   "its manifest) and its validation record, or that it was never validated.")
    p.add_argument("artifact", help=".onnx file or engine (.engine/.plan/.trt, manifest beside it)")
    p.add_argument("--json", action="store_true", help="print it all as one JSON object")
    p.set_defaults(func=_info)


def _zoo(args: argparse.Namespace) -> int:
    from .reporting import markdown_table
    from .zoo import table

    print(markdown_table(*table()))
    return 0


def _download(args: argparse.Namespace) -> int:
    from .checkpoints import fetch_checkpoint, fetch_training_log

    print(fetch_checkpoint(args.model))
    if args.log:
        print(fetch_training_log(args.model))
    return 0


def _info(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .artifacts import check_file, read_info, read_manifest, record_path
    from .files import sha256_file
    from .records import (
        checkpoint_file,
        partial,
        read_record,
        stale,
        summary,
        validate_advice,
        validate_command,
    )

    path = Path(args.artifact)
    manifest = read_manifest(path).to_dict() if check_file(path) == "engine" else None
    info = read_info(path)
    record = read_record(path)
    why = stale(path, record, full=True) if record else None
    random = info.checkpoint_sha256 is None
    if args.json:
        print(json.dumps({"artifact": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path),
                          "metadata": info.to_dict(), "manifest": manifest, "random_weights": random,
                          "validation": record, "validation_stale": why,
                          "validation_partial": bool(record and partial(record)),
                          "validate_command": None if random else validate_command(path, info)}, indent=2))
        return 0
    n = info.normalization
    print(f"{path} ({'ONNX' if manifest is None else 'TensorRT engine'}, {path.stat().st_size / 1e6:.1f} MB)")
    print(f"  model {info.model}, precision {info.precision}, input {info.input_size[0]}x{info.input_size[1]}, "
          f"batch {info.batch or 'dynamic'}, output {info.output}, {info.num_classes} classes")
    print(f"  {input_sentence(info)}")
    print(f"  normalization {n.to_dict()}")
    if random:
        seed = info.extra.get("random_seed")
        print(f"  weights: RANDOM WEIGHTS{f' (seed {seed})' if seed is not None else ''}, exported without a "
              "checkpoint: for plumbing and speed only, its predictions mean nothing")
    else:
        ckpt = checkpoint_file(info)
        print(f"  checkpoint sha256 {info.checkpoint_sha256}{f' ({ckpt})' if ckpt else ''}")
    print(f"  exported by pspnet-trt {info.package_version}")
    if info.extra:
        print("  extra:")
        for key in sorted(info.extra):
            print(f"    {key}={json.dumps(info.extra[key])}")
    if manifest is not None:
        gpu = manifest.get("gpu") or {}
        print(f"  TensorRT {manifest['tensorrt_version']}, built for {gpu.get('name')} (compute capability "
              f"{gpu.get('compute_capability')}) from {manifest['onnx']} in {manifest.get('build_seconds', 0):.0f} s, "
              f"flags {manifest.get('build_flags')}")
    if record is None:
        where = f"no {'validation block in ' if manifest is not None else ''}{record_path(path)}"
        print(f"  validation: never validated ({where})"
              + ("; random weights have nothing to validate" if random else f"; {validate_advice(path, info)}"))
        return 0
    print(f"  validation: {summary(record)}")
    if why:
        print(f"  the validation record is STALE: {why}; {validate_advice(path, info)}")
    elif record.get("passed") and (partial(record) or record.get("kind") == "agreement"):
        print(f"  not a full validation on a dataset: {validate_advice(path, info)}")
    return 0


def input_sentence(info: Any) -> str:
    """What the artifact takes and what a caller's images go through first (input format, frame size, resize)."""
    from .runtime.segmenter import default_resize

    h, w = info.input_size
    host = f"images of another size are resized on the host first ({default_resize(info)})"
    if info.frame_size is not None:
        fh, fw = info.frame_size
        resize = (f"resized in the graph to the network's {h}x{w} (OpenCV INTER_LINEAR arithmetic)" if (fh, fw) != (h, w)
                  else "no resize in the graph")
        return (f"input format {info.input_format}: uint8 BGR camera frames of {fh}x{fw} (N x {fh} x {fw} x 3), "
                f"{resize}, labels at {fh}x{fw} (frame upsample: {info.frame_upsample}); {host}")
    if info.input_format == "pixels":
        return (f"input format pixels: float 0..255 N x 3 x {h} x {w} in the model's channel order, normalised in the "
                f"graph; {host}")
    return f"input format {info.input_format}: float N x 3 x {h} x {w}, normalised on the host; {host}"
