"""The edge table: ResNet vs MobileNetV2 PSPNets side by side (parameters, GFLOPs, ONNX Runtime CPU latency in
FP32 and INT8, mIoU), as JSON and a markdown table.

    python benchmarks/edge_table.py [--report r18_os8_camvid=reports/r18/report.json ...] [--threads 2]
        [--iters 10] [--warmup 2] [--calib-images 8] [--out FILE.json]

Rows: r18_os8_camvid and mv2_os8_camvid at 360x480 (their shipped checkpoints), r50_os8_cityscapes and
mv2_os8_cityscapes at 512x1024 (random weights where no checkpoint is here: speed and size only, said in the row).
- params: the deployed network (the auxiliary head, used in training only, left out); GFLOPs: 2 x multiply-adds
  of the PyTorch forward at the size (torch.utils.flop_counter: convolutions and matmuls; the final upsample and
  argmax not counted).
- latency: median ms of --iters runs (one run of the script) of the FP32 export and of its INT8 for this CPU
  (``quantize --target cpu``: UINT8 activations, integer kernels, calibrated on --calib-images CamVid train frames;
  the TensorRT Q/DQ graph is what the mIoU column measures, and ONNX Runtime runs that one as slow
  fake-quantization, so its CPU time says nothing of an engine's), batch 1, --threads ONNX Runtime threads.
- mIoU: for the CamVid models, CamVid test mIoU of PyTorch / FP16 / INT8 (TensorRT Q/DQ graph) from the
  ``pspnet-trt validate`` report.json given with --report NAME=PATH (rows pytorch, fp16, int8); for the published
  models, sssegmentation's published mIoU (Cityscapes val).
- GPU / Jetson: not measured by this script (it needs TensorRT); the row says so and the docs give the command.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from bench_results import results_path

from pspnet_trt.bench import host, measure
from pspnet_trt.files import atomic_open, write_json
from pspnet_trt.reporting import fmt, markdown_table

ROOT = Path(__file__).resolve().parents[1]
ROWS: List[Tuple[str, Tuple[int, int]]] = [
    ("r18_os8_camvid", (360, 480)), ("mv2_os8_camvid", (360, 480)),
    ("r50_os8_cityscapes", (512, 1024)), ("mv2_os8_cityscapes", (512, 1024)),
]
JETSON = ("pspnet-trt export --model NAME --input-size HxW --out NAME.onnx && pspnet-trt calibrate --model NAME --data "
          "ROOT --input-size HxW && pspnet-trt quantize --onnx NAME.onnx --calibration calibration/NAME_train_n64_s0.txt "
          "--data ROOT --out NAME_int8.onnx && pspnet-trt build --onnx NAME.onnx --precision fp16 --out NAME_fp16.engine "
          "&& pspnet-trt build --onnx NAME_int8.onnx --precision int8 --out NAME_int8.engine && python benchmarks/bench.py "
          "--model NAME --engine NAME_fp16.engine --engine NAME_int8.engine --tegrastats")


def gflops(model: Any, size: Tuple[int, int]) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, *size))
    return counter.get_total_flops() / 1e9


def deployed_params(model: Any) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith("auxiliary_decoder."))


def report_miou(path: Optional[str]) -> Dict[str, Optional[float]]:
    """PyTorch / FP16 / INT8 mIoU and the INT8 pixel agreement from a validate report.json (by precision), or
    ``PT/FP16/INT8@SOURCE`` figures measured elsewhere (SOURCE: the record they come from)."""
    if not path:
        return {}
    if "@" in path:
        figures, source = path.split("@", 1)
        pt, fp16, int8 = (float(v) for v in figures.split("/"))
        return {"miou_pytorch": pt, "miou_fp16": fp16, "miou_int8": int8, "report": source}  # type: ignore[dict-item]
    rows = json.loads(Path(path).read_text())["backends"]
    out: Dict[str, Optional[float]] = {"miou_pytorch": rows[0]["miou"]}
    for r in rows[1:]:
        out[f"miou_{r['precision']}"] = r["miou"]
        out[f"agreement_{r['precision']}"] = r["agreement"]
    out["report"] = path  # type: ignore[assignment]
    return out


def calibration(n: int) -> Any:
    """The first ``n`` CamVid frames of samples/camvid (or $CAMVID_ROOT's train split when set): INT8 scales for
    a latency measurement; the accuracy column uses the 64-image list of `calibrate`."""
    import os

    from pspnet_trt.quant import CalibrationList

    camvid = os.environ.get("CAMVID_ROOT")
    root = Path(camvid) if camvid and Path(camvid, "train").is_dir() else ROOT / "samples" / "camvid"
    images = sorted(p for p in (root / "train").iterdir() if p.suffix.lower() in (".png", ".jpg"))[:n]
    return CalibrationList(root, images)


def row(name: str, size: Tuple[int, int], args: argparse.Namespace, reports: Dict[str, str], tmp: Path) -> Dict[str, Any]:
    import torch

    from pspnet_trt.checkpoints import shipped_checkpoint
    from pspnet_trt.deploy import DeployInfo
    from pspnet_trt.export import export_onnx
    from pspnet_trt.models import create_model
    from pspnet_trt.quant import quantize_onnx
    from pspnet_trt.runtime import open_backend
    from pspnet_trt.zoo import get_spec

    torch.set_num_threads(args.threads)
    spec = get_spec(name)
    shipped = shipped_checkpoint(name)
    model = create_model(name, shipped) if shipped else create_model(name, random_weights=True, seed=0)
    weights = weights_label(name)
    info = DeployInfo.from_spec(spec, input_size=size, output="labels")
    fp32 = export_onnx(model, info, tmp / f"{name}.onnx")
    int8 = quantize_onnx(fp32, calibration(args.calib_images), tmp / f"{name}_int8cpu.onnx", target="cpu")
    latency = {}
    for label, path in (("fp32", fp32), ("int8", int8)):
        backend = open_backend(path, device="cpu", threads=args.threads)
        latency[label] = round(measure(backend, args.iters, args.warmup).p50_ms, 1)
        print(f"{name} {label}: {latency[label]} ms", file=sys.stderr)
    import os

    out = {"model": name, "date": datetime.datetime.now().isoformat(timespec="seconds"),
           "load_average_1min": round(os.getloadavg()[0], 1), "backbone": spec.backbone, "input_size": list(size), "weights": weights,
           "params_m": round(deployed_params(model) / 1e6, 2), "gflops": round(gflops(model, size), 1),
           "ort_cpu_ms_fp32": latency["fp32"], "ort_cpu_ms_int8": latency["int8"],
           "int8_cpu": "quantize --target cpu (UINT8 activations, integer kernels)",
           "published_miou": spec.published_miou, "gpu_jetson": "not measured: needs TensorRT and a GPU"}
    out.update(report_miou(reports.get(name)))
    return out


def weights_label(name: str) -> str:
    from pspnet_trt.checkpoints import shipped_checkpoint
    from pspnet_trt.zoo import get_spec

    shipped = shipped_checkpoint(name)
    return f"shipped ({get_spec(name).shipped_checkpoint})" if shipped else "random (speed and size only)"


def markdown(record: Dict[str, Any]) -> str:
    header = ["model", "input", "weights", "params (M)", "GFLOPs", "ORT CPU FP32 ms", "ORT CPU INT8 ms",
              "mIoU PyTorch", "mIoU FP16", "mIoU INT8", "Jetson / GPU"]
    rows = []
    for r in record["rows"]:
        camvid = "miou_pytorch" in r
        rows.append([r["model"], "x".join(map(str, r["input_size"])), r["weights"].split(" (")[0], fmt(r["params_m"], ".2f"),
                     fmt(r["gflops"], ".1f"), fmt(r["ort_cpu_ms_fp32"], ".1f"), fmt(r["ort_cpu_ms_int8"], ".1f"),
                     fmt(r.get("miou_pytorch"), ".2f") if camvid else f"{r['published_miou']:.2f} (published)"
                     if r["published_miou"] is not None else "-",
                     fmt(r.get("miou_fp16"), ".2f") if camvid else "-", fmt(r.get("miou_int8"), ".2f") if camvid else "-",
                     "not measured (needs TensorRT)"])
    return markdown_table(header, rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--report", action="append", default=[],
                   help="NAME=PATH of a validate report.json, or NAME=PT/FP16/INT8@SOURCE (repeatable)")
    p.add_argument("--miou-only", action="store_true",
                   help="measure nothing: update the mIoU columns (and weights) of the rows of an existing --out")
    p.add_argument("--models", nargs="*", help="subset of the rows (default: all four)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--calib-images", type=int, default=8)
    p.add_argument("--out", help="JSON path (default: benchmarks/results/edge_table_<host>_<date>.json)")
    args = p.parse_args()
    reports = dict(item.split("=", 1) for item in args.report)
    rows = [r for r in ROWS if not args.models or r[0] in args.models]
    out = results_path("edge_table", args.out)
    # --models re-measures some rows of an existing table: the others are kept, each row with its own date
    old = json.loads(out.read_text()) if (args.models or args.miou_only) and out.is_file() else {"rows": []}
    kept = {r["model"]: r for r in old["rows"]}
    commands = old.get("commands", []) + [" ".join(["python", *sys.argv])]

    def record() -> Dict[str, Any]:
        return {**host(), "date": datetime.datetime.now().isoformat(timespec="seconds"), "commands": commands,
                "threads": args.threads, "iters": args.iters, "jetson_command": JETSON,
                "rows": [kept[name] for name, _ in ROWS if name in kept]}

    if args.miou_only:
        for name, r in kept.items():
            r.update(report_miou(reports.get(name)), weights=weights_label(name))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            for name, size in rows:
                kept[name] = row(name, size, args, reports, Path(tmp))
                write_json(out, record())  # each row as soon as it is measured
    write_json(out, record())
    with atomic_open(out.with_suffix(".md"), "w") as f:
        f.write(markdown(record()) + "\n")
    print(markdown(record()))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
