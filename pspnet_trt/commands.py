"""Subcommands that belong to no single stage: ``zoo``, ``download`` and ``info``."""

from __future__ import annotations

import argparse


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
    from .zoo import format_table

    print(format_table())
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

    from .deploy import DeployInfo, read_onnx_info
    from .errors import UserError
    from .files import sha256_file
    from .records import read_record, record_path, stale, summary

    path = Path(args.artifact)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    manifest = None
    if path.suffix == ".onnx":
        info = read_onnx_info(path)
    else:
        from .trt.manifest import read_manifest

        manifest = read_manifest(path).to_dict()
        info = DeployInfo.from_dict(manifest["deploy"], source=f"{path}.json")
    record = read_record(path)
    why = stale(path, record, full=True) if record else None
    if args.json:
        print(json.dumps({"artifact": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path),
                          "metadata": info.to_dict(), "manifest": manifest, "validation": record,
                          "validation_stale": why}, indent=2))
        return 0
    n = info.normalization
    print(f"{path} ({'ONNX' if manifest is None else 'TensorRT engine'}, {path.stat().st_size / 1e6:.1f} MB)")
    print(f"  model {info.model}, precision {info.precision}, input {info.input_size[0]}x{info.input_size[1]}, "
          f"batch {info.batch or 'dynamic'}, output {info.output}, {info.num_classes} classes")
    print(f"  normalization {n.to_dict()}")
    print(f"  checkpoint sha256 {info.checkpoint_sha256 or 'none (random weights)'}, exported by pspnet-trt "
          f"{info.package_version}")
    if info.extra:
        print(f"  extra: {', '.join(sorted(info.extra))}")
    if manifest is not None:
        gpu = manifest.get("gpu") or {}
        print(f"  TensorRT {manifest['tensorrt_version']}, built for {gpu.get('name')} (compute capability "
              f"{gpu.get('compute_capability')}) from {manifest['onnx']} in {manifest.get('build_seconds', 0):.0f} s, "
              f"flags {manifest.get('build_flags')}")
    if record is None:
        print(f"  validation: never validated (no {'validation block in ' if manifest is not None else ''}"
              f"{record_path(path)}); run `pspnet-trt validate --model {info.model} --data ROOT "
              f"{'--onnx' if manifest is None else '--engine'} {path} --report DIR`")
    else:
        print(f"  validation: {summary(record)}")
        if why:
            print(f"  the validation record is STALE: {why}; validate this file again")
    return 0
