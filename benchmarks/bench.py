"""Latency p50/p90/p99 and throughput of engines, ONNX files and PyTorch; results as files.

    python benchmarks/bench.py --model r18_os8_camvid --onnx a.onnx --onnx b.onnx [--engine e.engine] [--torch]
        [--device auto] [--threads 2] [--iters 20] [--warmup 3] [--tegrastats] [--out benchmarks/results]

Writes benchmarks/results/bench_<host>_<date>.json, a markdown table beside it and a PNG plot.
On a Jetson, --tegrastats samples board power while each backend is timed.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

from pspnet_trt.bench import gpu_latency, host, measure, parse_tegrastats
from pspnet_trt.files import atomic_open, write_json
from pspnet_trt.reporting import fmt, markdown_table, pyplot, save_png

ROOT = Path(__file__).resolve().parents[1]


class Tegrastats:
    """Runs `tegrastats --interval 100` while timing and averages the board power it prints."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(["tegrastats", "--interval", "100"], stdout=subprocess.PIPE, text=True)
        self.samples: List[float] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            watts = parse_tegrastats(line)
            if watts is not None:
                self.samples.append(watts)

    def stop(self) -> Optional[float]:
        self.proc.terminate()
        return sum(self.samples) / len(self.samples) if self.samples else None


def run(args: argparse.Namespace) -> Dict[str, Any]:
    from pspnet_trt.runtime import open_backend

    backends = [(p, lambda p=p: open_backend(p, device=args.device, threads=args.threads)) for p in args.onnx]
    backends += [(p, lambda p=p: open_backend(p, device=args.device)) for p in args.engine]
    if args.torch:
        from pspnet_trt.runtime.torch_backend import TorchBackend
        from pspnet_trt.sizes import parse_size

        def torch_backend() -> Any:
            import torch

            torch.set_num_threads(args.threads)
            from pspnet_trt.deploy import DeployInfo
            from pspnet_trt.export import zoo_model
            from pspnet_trt.zoo import get_spec

            spec = get_spec(args.model)
            size = parse_size(args.input_size) if args.input_size else spec.deploy_size
            model = zoo_model(args.model, args.checkpoint, random_weights=args.checkpoint is None)
            return TorchBackend(model, DeployInfo.from_spec(spec, input_size=size, output="labels"), device=args.device)

        backends.append(("pytorch", torch_backend))
    rows = []
    for label, make in backends:
        backend = make()
        power = Tegrastats() if args.tegrastats else None
        result = measure(backend, iterations=args.iters, warmup=args.warmup)
        if backend.name == "tensorrt":
            result.gpu_p50_ms = gpu_latency(backend)
        if power is not None:
            result.power_w = power.stop()
        row = {"artifact": str(label), **result.to_dict()}
        print(f"{row['artifact']}: p50 {result.p50_ms:.1f} ms, p90 {result.p90_ms:.1f}, p99 {result.p99_ms:.1f}, "
              f"{result.throughput_ips:.2f} images/s", flush=True)
        rows.append(row)
        backend.close()
    return {"model": args.model, "threads": args.threads, "date": datetime.datetime.now().isoformat(timespec="seconds"),
            **host(), "results": rows}


def markdown(data: Dict[str, Any]) -> str:
    rows = [[Path(r["artifact"]).name, r["backend"], r["precision"], f"{r['input_size'][0]}x{r['input_size'][1]}",
             fmt(r["p50_ms"], ".1f"), fmt(r["p90_ms"], ".1f"), fmt(r["p99_ms"], ".1f"), fmt(r["throughput_ips"], ".2f"),
             fmt(r["gpu_p50_ms"], ".2f"), fmt(r["power_w"], ".1f")] for r in data["results"]]
    cpu = data["cpu"]
    return (f"# {data['model']} on {data['host']} ({data['processor'] or data['machine']}, {data['threads']} threads)\n\n"
            f"CPU: {cpu['model']}, class {cpu['class']} (flags: {' '.join(cpu['flags']) or 'unknown'}): CPU figures "
            "compare only with those of the same class.\n\n"
            + markdown_table(["artifact", "backend", "precision", "input", "p50 ms", "p90 ms", "p99 ms", "images/s",
                              "GPU p50 ms", "W"], rows) + "\n")


def plot(data: Dict[str, Any], path: Path) -> None:
    plt = pyplot()
    labels = [f"{r['backend']}\n{r['precision']}" for r in data["results"]]
    fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(labels)), 3.5))
    ax.bar(labels, [r["p50_ms"] for r in data["results"]],
           yerr=[[0] * len(labels), [r["p90_ms"] - r["p50_ms"] for r in data["results"]]], capsize=4)
    ax.set_ylabel("latency p50 ms (bar to p90)")
    ax.set_title(f"{data['model']} on {data['host']}")
    fig.tight_layout()
    save_png(fig, path)


def parser() -> argparse.ArgumentParser:
    from pspnet_trt.runtime.device import DEVICE_HELP

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--onnx", action="append", default=[])
    ap.add_argument("--engine", action="append", default=[])
    ap.add_argument("--torch", action="store_true", help="also PyTorch (random weights unless --checkpoint)")
    ap.add_argument("--checkpoint")
    ap.add_argument("--input-size")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--tegrastats", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--device", default="auto", help=DEVICE_HELP)
    return ap


def main() -> int:
    args = parser().parse_args()
    data = run(args)
    stem = Path(args.out) / f"bench_{data['host']}_{datetime.date.today()}_{args.model}"
    write_json(f"{stem}.json", data)
    with atomic_open(f"{stem}.md", "w") as f:
        f.write(markdown(data))
    plot(data, Path(f"{stem}.png"))
    print(f"{stem}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
