"""Load test of the bundled Triton server: N concurrent clients for T seconds, with and without dynamic batching.

    python benchmarks/triton_load.py [--onnx ARTIFACT.onnx] [--clients 4] [--seconds 10] [--input-size 64x128]

Serves the artifact (default: r18_os8_camvid exported here with random weights, normalised input, dynamic
batch, at --input-size; pass a raw-frame ONNX with --onnx when you have one) as the Python-backend model
written by `pspnet-trt triton --backend python`, on the nvidia-pytriton server started by
`pspnet-trt serve`'s code, twice: dynamic batching on (max_batch_size --max-batch, --max-queue-delay-us)
and off (max_batch_size 0). Each client is a thread with its own TritonSegmenter sending one CamVid
frame (its own image, full size) per request, back to back; every answer is compared with the local
Segmenter's labels for that image. Reports requests/s, p50/p99 latency, errors, wrong answers and the
server's mean batch (inference_count / execution_count). Writes JSON + md to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from pspnet_trt.bench import host
from pspnet_trt.errors import UserError
from pspnet_trt.files import atomic_open, write_json
from pspnet_trt.preprocess import read_image

ROOT = Path(__file__).resolve().parents[1]
MODEL = "r18_os8_camvid"


def percentile(values: List[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_mode(onnx: Path, images: List[np.ndarray], expected: List[np.ndarray], args: argparse.Namespace,
             dynamic: bool, work: Path) -> Dict[str, Any]:
    from tritonclient.grpc import InferenceServerClient

    from pspnet_trt.serving import RepoOptions, TritonSegmenter, TritonServer, write_repository
    from pspnet_trt.serving.server import free_port

    name = "dyn" if dynamic else "nobatch"
    opts = RepoOptions(name="seg", backend="python", max_batch=args.max_batch if dynamic else 0,
                       max_queue_delay_us=args.max_queue_delay_us, instances=args.instances)
    repo = work / name
    write_repository([onnx], repo, opts)
    ports = set()
    while len(ports) < 3:
        ports.add(free_port())
    http, grpc, metrics = sorted(ports)
    with TritonServer(repo, http_port=http, grpc_port=grpc, metrics_port=metrics, exit_timeout_s=5) as server:
        url = server.grpc_url if args.protocol == "grpc" else server.http_url
        warm = TritonSegmenter(url, "seg")
        for im in images[:2]:
            warm.predict(im)
        stats_client = InferenceServerClient(server.grpc_url.split("://")[1])

        def counts() -> Any:
            m = stats_client.get_inference_statistics("seg", as_json=True)["model_stats"][0]
            return int(m.get("inference_count", 0)), int(m.get("execution_count", 0))

        inf0, exe0 = counts()
        latencies: List[List[float]] = [[] for _ in range(args.clients)]
        errors: List[str] = []
        wrong = [0] * args.clients
        start = threading.Barrier(args.clients + 1)
        stop_at = [0.0]

        def client(i: int) -> None:
            seg = TritonSegmenter(url, "seg")
            image, want = images[i % len(images)], expected[i % len(images)]
            start.wait()
            while time.perf_counter() < stop_at[0]:
                t = time.perf_counter()
                try:
                    got = seg.predict(image)
                except Exception as e:  # counted, reported
                    errors.append(f"{type(e).__name__}: {e}")
                    continue
                latencies[i].append(time.perf_counter() - t)
                wrong[i] += int(not np.array_equal(got, want))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        stop_at[0] = time.perf_counter() + args.seconds
        t0 = time.perf_counter()
        start.wait()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        inf1, exe1 = counts()
    lat = [x for per in latencies for x in per]
    return {
        "dynamic_batching": dynamic, "max_batch_size": opts.max_batch, "max_queue_delay_us": args.max_queue_delay_us
        if dynamic else None, "requests": len(lat), "seconds": round(elapsed, 2),
        "requests_per_s": round(len(lat) / elapsed, 2), "p50_ms": round(1000 * percentile(lat, 50), 1),
        "p99_ms": round(1000 * percentile(lat, 99), 1), "errors": len(errors), "wrong_answers": sum(wrong),
        "server_inferences": inf1 - inf0, "server_executions": exe1 - exe0,
        "mean_batch": round((inf1 - inf0) / max(exe1 - exe0, 1), 2), "first_errors": errors[:3],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onnx", help="artifact to serve (default: export r18_os8_camvid, random weights)")
    ap.add_argument("--input-size", default="64x128", help="input size of the exported default artifact")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--max-queue-delay-us", type=int, default=2000)
    ap.add_argument("--instances", type=int, default=1)
    ap.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    ap.add_argument("--data", default=os.environ.get("CAMVID_ROOT"), help="CamVid root (default: samples/camvid)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()

    from pspnet_trt.artifacts import read_onnx_info
    from pspnet_trt.runtime import Segmenter
    from pspnet_trt.serving import read_artifact

    data = Path(args.data) if args.data else ROOT / "samples" / "camvid"
    paths = sorted((data / "test").glob("*.*"))[:max(args.clients, 1)]
    if not paths:
        raise UserError(f"no images in {data / 'test'}")
    images = [read_image(str(p)) for p in paths]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.onnx:
            onnx = Path(args.onnx)
        else:
            from pspnet_trt.export import export_zoo
            from pspnet_trt.sizes import parse_size

            onnx = export_zoo(MODEL, work / f"{MODEL}.onnx", input_size=parse_size(args.input_size), batch=None,
                              random_weights=True)
        info = read_onnx_info(onnx)
        raw = read_artifact(onnx).raw_frames  # keyed off the artifact's input (uint8 NxHxWx3)
        local = Segmenter.open(onnx)
        expected = [local.predict(im) for im in images]
        t0 = time.perf_counter()
        single = [local.predict(images[0]) for _ in range(5)]
        local_ms = 1000 * (time.perf_counter() - t0) / len(single)
        local.close()
        load = os.getloadavg()[0]
        rows = [run_mode(onnx, images, expected, args, dynamic, work) for dynamic in (True, False)]
    result = {
        **host(), "date": datetime.datetime.now().isoformat(timespec="seconds"), "model": info.model,
        "artifact": args.onnx or f"{MODEL} exported here, random weights", "input_size": list(info.input_size),
        "artifact_input": "raw frames (bgr8)" if raw else "normalised (Segmenter preprocesses in the Python backend)",
        "frame_size": list(images[0].shape[:2]), "clients": args.clients, "seconds_per_mode": args.seconds,
        "protocol": args.protocol, "instances": args.instances, "numpy": np.__version__,
        "local_segmenter_ms_per_frame": round(local_ms, 1), "load_average_1min_at_start": round(load, 2),
        "note": "shared 2-core machine (other jobs running): compare the two rows, not absolute numbers",
        "rows": rows,
    }
    out = Path(args.out)
    stem = f"triton_load_{result['host']}_{datetime.date.today()}"
    write_json(out / f"{stem}.json", result)
    with atomic_open(out / f"{stem}.md") as f:
        f.write(f"# Triton load: {result['model']} ({result['artifact_input']}), {args.clients} clients x "
                f"{args.seconds:g} s, {args.protocol}\n\n")
        f.write(f"{result['date']}, {result['host']} ({result['cpus']} CPUs, shared; load {result['load_average_1min_at_start']}"
                f" at start), input {info.input_size[0]}x{info.input_size[1]}, frames {images[0].shape[0]}x"
                f"{images[0].shape[1]}, Python backend on the CPU, numpy {np.__version__}; local Segmenter "
                f"{result['local_segmenter_ms_per_frame']} ms/frame.\n\n")
        f.write("| dynamic batching | max_batch_size | requests/s | p50 ms | p99 ms | errors | wrong | mean batch |\n")
        f.write("|---|---|---|---|---|---|---|---|\n")
        for r in rows:
            f.write(f"| {'on' if r['dynamic_batching'] else 'off'} | {r['max_batch_size']} | {r['requests_per_s']} | "
                    f"{r['p50_ms']} | {r['p99_ms']} | {r['errors']} | {r['wrong_answers']} | {r['mean_batch']} |\n")
    for r in rows:
        print({k: r[k] for k in ("dynamic_batching", "requests", "requests_per_s", "p50_ms", "p99_ms", "errors",
                                 "wrong_answers", "mean_batch")})
    print(out / f"{stem}.json")
    return 0 if all(r["errors"] == 0 and r["wrong_answers"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
