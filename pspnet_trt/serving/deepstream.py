"""``pspnet-trt deepstream``: a Gst-nvinfer config (semantic segmentation) and label file for an engine.

nvinfer preprocesses as ``y = net-scale-factor * (x - offsets[c])``: one scale for all channels, so an
ImageNet ``(x - mean) / std`` cannot be expressed. The config therefore pairs with an engine built from an
``--input-format pixels`` export: nvinfer hands over float 0..255 planar pixels at the network size
(``net-scale-factor=1``, ``offsets=0;0;0``) in the model's colour order, and the graph normalises per channel.

nvinfer's segmentation parser (``network-type=2``) reads the first output layer as float class scores
C x H x W (``segmentation-output-order=0``), and for each pixel keeps the class with the highest score among
those above ``segmentation-threshold``, starting from a best score of -1 (DeepStream's
``SegmentPostprocessor::fillSegmentationOutput``): raw logits at or below -1 would never win, so a pixels
export with a scores output carries softmax probabilities (``extra["scores"] == "softmax"``), and the
threshold is 0. Every number comes from the engine's manifest.

DeepStream cannot run here: the tests check that the file parses as a GKeyFile/INI, that every key is one of
nvinfer's documented keys (written out in the test from NVIDIA's documentation, not from :data:`NVINFER_KEYS`),
and that each number equals the manifest's; not that nvinfer accepts the engine.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, Tuple, Union

from ..deploy import DeployInfo
from ..errors import UserError
from ..files import atomic_open

# Keys of the [property] group that Gst-nvinfer parses: the CONFIG_GROUP_INFER_* macros of DeepStream's
# gstnvinfer_property_parser.h (DeepStream 6.x-8.0 SDK API reference, "gstnvinfer_property_parser.h File
# Reference", docs.nvidia.com/metropolis/deepstream/dev-guide/sdk-api/gstnvinfer__property__parser_8h.html).
NVINFER_KEYS: Tuple[str, ...] = (
    "gie-unique-id", "process-mode", "interval", "labelfile-path", "gpu-id", "secondary-reinfer-interval",
    "output-tensor-meta", "enable-dla", "use-dla-core",
    "batch-size", "tensor-meta-pool-size", "network-mode", "model-engine-file", "int8-calib-file", "workspace-size",
    "output-blob-names", "is-classifier", "network-type", "force-implicit-batch-dim", "infer-dims",
    "output-io-formats", "layer-device-precision",
    "model-color-format", "net-scale-factor", "offsets", "mean-file", "maintain-aspect-ratio", "symmetric-padding",
    "scaling-filter", "scaling-compute-hw", "network-input-order", "input-tensor-from-meta",
    "custom-lib-path", "parse-bbox-func-name", "parse-bbox-instance-mask-func-name", "engine-create-func-name",
    "parse-classifier-func-name", "custom-network-config",
    "model-file", "proto-file", "uff-file", "uff-input-order", "input-dims", "uff-input-dims", "uff-input-blob-name",
    "tlt-encoded-model", "tlt-model-key", "onnx-file",
    "num-detected-classes", "enable-dbscan", "cluster-mode",
    "classifier-type", "classifier-threshold", "classifier-async-mode",
    "segmentation-threshold", "segmentation-output-order", "output-instance-mask",
    "input-object-min-width", "input-object-min-height", "input-object-max-width", "input-object-max-height",
    "operate-on-gie-id", "operate-on-class-ids", "filter-out-class-ids",
)
NETWORK_TYPE_SEGMENTATION = 2  # NvDsInferNetworkType_Segmentation
NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}  # nvinfer: 0=FP32 1=INT8 2=FP16
COLOR_FORMAT = {"rgb": 0, "bgr": 1}  # model-color-format: 0=RGB 1=BGR 2=GRAY


def nvinfer_config(info: DeployInfo, engine: Union[str, Path], labels_file: str, max_batch: int = 1) -> Dict[str, str]:
    """The [property] group for ``info`` (an engine's manifest), or a UserError naming the export to make."""
    if info.input_format != "pixels":
        raise UserError(f"{engine} takes {info.input_format} input, but nvinfer delivers float 0..255 pixels and "
                        "normalises with one scale for all channels: export with --input-format pixels --output logits "
                        "and build that")
    if "logits" not in info.output_names:
        raise UserError(f"{engine} outputs {info.output}, but nvinfer's segmentation parser needs class scores: "
                        "export with --input-format pixels --output logits")
    h, w = info.input_size
    return {
        "gpu-id": "0",
        "gie-unique-id": "1",
        "process-mode": "1",  # primary: whole frames
        "network-type": str(NETWORK_TYPE_SEGMENTATION),
        "model-engine-file": str(engine),
        "labelfile-path": labels_file,
        "batch-size": str(info.batch or max_batch),
        "network-mode": str(NETWORK_MODE[info.precision]),
        "infer-dims": f"3;{h};{w}",
        "model-color-format": str(COLOR_FORMAT[info.normalization.channel_order]),
        "net-scale-factor": "1.0",  # the graph normalises per channel (--input-format pixels)
        "offsets": "0;0;0",
        "maintain-aspect-ratio": "0",  # stretch to the network size, as Segmenter(resize="stretch")
        "output-blob-names": "logits",
        "num-detected-classes": str(info.num_classes),
        "segmentation-output-order": "0",  # NCHW
        "segmentation-threshold": "0.0",  # softmax scores are > 0; see the module docstring
    }


def write_deepstream(engine: Union[str, Path], out: Union[str, Path]) -> Tuple[Path, Path]:
    """``out``/config_infer_<engine stem>.txt and ``out``/labels.txt for ``engine`` (manifest beside it)."""
    from ..artifacts import manifest_path, read_manifest
    from ..files import check_outputs

    engine, out = Path(engine), Path(out)
    labels = out / "labels.txt"
    check_outputs([labels, out / f"config_infer_{engine.stem}.txt"], [engine, manifest_path(engine)],
                  fix="pass another --out folder")
    manifest = read_manifest(engine)
    info = manifest.info
    config = nvinfer_config(info, engine.resolve(), labels.name, max_batch=int(manifest.build_flags.get("max_batch", 1)))
    unknown = sorted(set(config) - set(NVINFER_KEYS))
    if unknown:  # a programming error, caught by the tests
        raise RuntimeError(f"keys nvinfer does not document: {unknown}")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(labels, "w") as f:
        f.write("".join(f"{name}\n" for name in info.class_names))
    path = out / f"config_infer_{engine.stem}.txt"
    with atomic_open(path, "w") as f:
        f.write(f"# Gst-nvinfer config written by pspnet-trt for {engine.name} ({info.model}, {info.precision}, "
                f"{h_w(info)}, {info.num_classes} classes); numbers from its manifest.\n")
        f.write("[property]\n")
        f.writelines(f"{k}={v}\n" for k, v in config.items())
    return path, labels


def h_w(info: DeployInfo) -> str:
    return f"{info.input_size[0]}x{info.input_size[1]}"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deepstream", help="Gst-nvinfer config + label file for an engine of a --input-format pixels export")
    p.add_argument("--engine", required=True, help="engine built from `export --input-format pixels --output logits`")
    p.add_argument("--out", required=True, help="folder for config_infer_<engine>.txt and labels.txt")
    p.set_defaults(func=_deepstream)


def _deepstream(args: argparse.Namespace) -> int:
    config, labels = write_deepstream(args.engine, args.out)
    print(config)
    print(labels)
    return 0
