"""``pspnet-trt export`` and ``pspnet-trt check-export``."""

from __future__ import annotations

import argparse

from ..deploy import FLOAT_PRECISIONS
from ..values import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="PSPNet -> ONNX (exact fixed pools, static input size, fp32 or fp16 graph)")
    p.add_argument("--model", required=True, help="zoo name (see `pspnet-trt zoo`)")
    add_weights_options(p, "sssegmentation .pth")
    p.add_argument("--input-size", help="static input HxW (default: the zoo entry's deploy size)")
    batch = p.add_mutually_exclusive_group()
    batch.add_argument("--batch", type=int, default=1, help="static batch size (default 1)")
    batch.add_argument("--dynamic-batch", action="store_true", help="dynamic batch dimension")
    p.add_argument("--precision", choices=FLOAT_PRECISIONS, default="fp32")
    p.add_argument("--output", choices=("labels", "logits", "both"), default="labels",
                   help="labels: HxW uint8 map (ArgMax in the graph); logits: CxHxW float32")
    p.add_argument("--labels-dtype", choices=("uint8", "int32"), default="uint8",
                   help="dtype of the labels output (int32 for TensorRT 8.5/8.6, which cannot cast to uint8)")
    p.add_argument("--num-classes", type=positive_int, help="override the zoo's class count (fine-tuned checkpoints)")
    add_input_format_options(p)
    p.add_argument("--out", required=True, help="output .onnx path")
    p.set_defaults(func=_export)

    p = sub.add_parser("check-export", help="PyTorch vs ONNX Runtime parity of an exported file")
    p.add_argument("--model", required=True)
    add_weights_options(p, "the checkpoint the ONNX was exported from",
                        "the seed it was exported with (default: the one its metadata records)")
    p.add_argument("--num-classes", type=positive_int)
    p.add_argument("--onnx", required=True, help="file exported by `pspnet-trt export` (any output: labels are compared as labels)")
    p.add_argument("--images", nargs="*", help="image files (default: random inputs)")
    p.add_argument("--min-agreement", type=float, default=0.99999, help="exit 1 below this argmax agreement")
    p.add_argument("--json", help="write the report here")
    p.set_defaults(func=_check)


def add_weights_options(p: argparse.ArgumentParser, checkpoint: str, seed: str = "seed of the random weights (0)"
                        ) -> None:
    """--checkpoint / --random-weights [--random-seed]: the weights of a zoo model (see models.create_model)."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--checkpoint", help=f"{checkpoint} (default: the checkpoint shipped in samples/ for "
                                            "r18_os8_camvid, else the published one, downloaded once)")
    add_random_weights_option(group)
    p.add_argument("--random-seed", type=int, help=f"with --random-weights: {seed}")


def add_random_weights_option(p: argparse._ActionsContainer) -> None:
    p.add_argument("--random-weights", action="store_true",
                   help="random weights instead of a checkpoint: for plumbing and speed only; the artifact records "
                        "it (no checkpoint sha256) and every later stage says so")


def random_seed(args: argparse.Namespace, default: int = 0) -> int:
    """The --random-seed of a --random-weights run; a UserError for a seed without --random-weights."""
    from ..errors import UserError

    if args.random_seed is not None and not args.random_weights:
        raise UserError(f"--random-seed {args.random_seed} is for random weights: add --random-weights, or drop it")
    return default if args.random_seed is None else args.random_seed


def add_input_format_options(p: argparse.ArgumentParser) -> None:
    """--input-format / --frame-size / --frame-upsample (export and engine)."""
    from ..deploy import FRAME_UPSAMPLES, INPUT_FORMATS
    from .onnx_export import DEFAULT_FRAME_UPSAMPLE

    p.add_argument("--input-format", choices=INPUT_FORMATS, default="normalized",
                   help="normalized: float NCHW, host preprocessing (default); bgr8: uint8 NxHxWx3 BGR camera frames "
                        "at --frame-size, preprocessing and the upsample to the frame in the graph; pixels: float "
                        "0..255 NCHW at the input size, per-channel normalisation in the graph (DeepStream)")
    p.add_argument("--frame-size", help="bgr8: HxW of the camera frames the graph takes (e.g. 1024x2048)")
    p.add_argument("--frame-upsample", choices=FRAME_UPSAMPLES, default=DEFAULT_FRAME_UPSAMPLE,
                   help="bgr8: logits = bilinear class scores to the frame, then ArgMax; labels = ArgMax at the "
                        "input size, then nearest (cheaper, see docs/export-and-precision.md)")


def _export(args: argparse.Namespace) -> int:
    from ..sizes import parse_size
    from . import export_zoo

    out = export_zoo(
        args.model, args.out, checkpoint=args.checkpoint,
        input_size=parse_size(args.input_size, "--input-size") if args.input_size else None, output=args.output,
        precision=args.precision, batch=None if args.dynamic_batch else args.batch, num_classes=args.num_classes,
        labels_dtype=args.labels_dtype, random_seed=random_seed(args), input_format=args.input_format,
        frame_size=parse_size(args.frame_size, "--frame-size") if args.frame_size else None, frame_upsample=args.frame_upsample,
        random_weights=args.random_weights,
    )
    print(out)
    return 0


def _check(args: argparse.Namespace) -> int:
    from ..artifacts import read_onnx_info
    from ..errors import UserError
    from ..files import check_outputs, write_json
    from ..models import create_model
    from ..preprocess import read_image
    from . import check_export

    check_outputs([args.json], [args.onnx, args.checkpoint, *(args.images or [])], fix="pass another --json")
    info = read_onnx_info(args.onnx)
    if info.model != args.model:  # before any checkpoint is resolved (a zoo name downloads its published one)
        raise UserError(f"{args.onnx} was exported from {info.model}, not {args.model}: pass --model {info.model}")
    if args.num_classes is not None and args.num_classes != info.num_classes:
        raise UserError(f"{args.onnx} has {info.num_classes} classes, not --num-classes {args.num_classes}: pass "
                        f"--num-classes {info.num_classes}")
    if (info.checkpoint_sha256 is None) != args.random_weights:
        fix = ("add --random-weights (the seed is read from its metadata)" if info.checkpoint_sha256 is None else
               "drop --random-weights and pass the --checkpoint it was exported from")
        raise UserError(f"{args.onnx} was exported from "
                        f"{'random weights' if info.checkpoint_sha256 is None else 'a checkpoint'}: {fix}")
    model = create_model(args.model, args.checkpoint, random_weights=args.random_weights,
                         seed=random_seed(args, int(info.extra.get("random_seed", 0))), num_classes=args.num_classes)
    if model.weights.sha256 != info.checkpoint_sha256:
        raise UserError(f"{args.onnx} was exported from checkpoint sha256 {info.checkpoint_sha256} but the check uses "
                        f"{model.weights.sha256} ({model.weights.path}): pass the same --checkpoint as at export")
    images = [read_image(p) for p in args.images] if args.images else None
    report = check_export(model, args.onnx, images=images)
    print(report)
    if args.json:
        write_json(args.json, report.to_dict())
    return 0 if report.argmax_agreement >= args.min_agreement else 1


