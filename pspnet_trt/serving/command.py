"""``pspnet-trt triton`` (write a model repository) and ``pspnet-trt serve`` (run the bundled server)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("triton", help="Triton model repository from artifacts (tensorrt_plan, onnxruntime_onnx, python)")
    p.add_argument("artifacts", nargs="+", metavar="ARTIFACT", help=".onnx or engine (.engine/.plan with its manifest)")
    p.add_argument("--out", required=True, help="model repository folder (created; models are added to it, all or none; "
                   "a model dir of the same name that this command wrote is replaced whole, any other is refused)")
    p.add_argument("--name", help="model name, one folder name of letters, digits, _, - and . (one artifact; "
                   "default: the artifact's file name)")
    p.add_argument("--max-batch", type=int, help="max_batch_size (default: from the artifact's batch range: 0 for a "
                   "static batch (the python frames model: that batch), the profile's max for a dynamic engine, 8 for "
                   "a dynamic ONNX; 0 = no batching)")
    p.add_argument("--instances", type=int, default=1, help="model instances (instance_group count)")
    p.add_argument("--max-queue-delay-us", type=int, default=100, help="dynamic batcher's max queue delay")
    p.add_argument("--no-dynamic-batching", action="store_true", help="batch only what one request carries")
    p.add_argument("--backend", choices=("auto", "python"), default="auto",
                   help="auto: tensorrt_plan for an engine, onnxruntime_onnx for an ONNX (for servers with those "
                   "backends, e.g. NVIDIA's containers); python: model.py runs the artifact through Segmenter (the "
                   "only kind the bundled `pspnet-trt serve` loads)")
    p.add_argument("--python-io", choices=("frames", "artifact"), default="frames",
                   help="python backend: frames (UINT8 HxWx3 in, labels out) or artifact (the artifact's own tensors, "
                   "as tensorrt_plan/onnxruntime_onnx serve it)")
    p.add_argument("--device", default="auto", help="where an ONNX runs: auto (CUDA where onnxruntime-gpu is "
                   "installed, else the CPU), cpu, cuda or cuda:N; an engine runs on its instance's GPU")
    p.set_defaults(func=_triton)

    p = sub.add_parser("serve", help="run the Triton server bundled in nvidia-pytriton on 127.0.0.1 (foreground)")
    p.add_argument("repository", metavar="REPO", help="model repository written by `pspnet-trt triton`")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--log", help="server log file (default: a new file in the temp folder)")
    p.add_argument("--ready-timeout", type=float, default=120.0, help="seconds to wait for every model to load")
    p.set_defaults(func=_serve)


def _triton(args: argparse.Namespace) -> int:
    from .repository import RepoOptions, write_repository

    opts = RepoOptions(name=args.name, max_batch=args.max_batch, instances=args.instances,
                       max_queue_delay_us=args.max_queue_delay_us, backend=args.backend,
                       dynamic_batching=not args.no_dynamic_batching, device=args.device,
                       python_io=args.python_io)
    for model_dir in write_repository(args.artifacts, args.out, opts):
        print(model_dir)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .server import TritonServer, serve_forever

    server = TritonServer(args.repository, http_port=args.http_port, grpc_port=args.grpc_port,
                          metrics_port=args.metrics_port, log_file=args.log)
    return serve_forever(server, timeout_s=args.ready_timeout)
