"""Run NVIDIA ModelOpt's ONNX PTQ (INT8) on one FP32 ONNX; used by ``quantizer_compare.py``.

Runs in a *separate* environment: ``nvidia-modelopt[onnx]`` pulls onnxruntime-gpu and cupy-cuda12x,
which clash with onnxruntime in pspnet-trt's environment. A CPU-only environment that runs it, i.e.
ModelOpt's dependencies and its [onnx] extra minus onnxruntime-gpu, CuPy and cppimport (checked in
a fresh venv with ModelOpt 0.47.0)::

    python -m venv ../venv-mo
    ../venv-mo/bin/pip install torch==2.13.0 onnxruntime==1.32.0 onnx onnxconverter-common onnx-graphsurgeon \
        onnxscript onnxslim polygraphy lief ml_dtypes nvidia-ml-py ninja numpy packaging "setuptools>=80" tqdm \
        PyYAML omegaconf "pulp<4.0" pydantic regex rich safetensors scipy
    ../venv-mo/bin/pip install --no-deps nvidia-modelopt==0.47.0
    ../venv-mo/bin/python benchmarks/modelopt_ptq.py --onnx fp32.onnx --calibration calib.npy --out int8.onnx

Deliberately imports nothing from pspnet_trt. Prints one JSON line (seconds, settings) on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--calibration", required=True, help=".npy of preprocessed NCHW float32 images")
    ap.add_argument("--out", required=True)
    ap.add_argument("--method", default="entropy", choices=("entropy", "max"))
    ap.add_argument("--high-precision", default="fp32", choices=("fp32", "fp16"),
                    help="dtype of the layers left unquantized (ModelOpt's own default is fp16)")
    ap.add_argument("--exclude", action="append", default=[], help="node-name regex left in float (repeatable)")
    ap.add_argument("--op-types", help="comma-separated op types to quantize (default: ModelOpt's choice)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import modelopt
    from modelopt.onnx.quantization import quantize

    data = np.load(args.calibration)
    start = time.perf_counter()
    quantize(args.onnx, quantize_mode="int8", calibration_data=data, calibration_method=args.method,
             calibration_eps=["cpu"], high_precision_dtype=args.high_precision,
             nodes_to_exclude=args.exclude or None,
             op_types_to_quantize=args.op_types.split(",") if args.op_types else None,
             output_path=args.out, log_level="WARNING")
    seconds = time.perf_counter() - start
    print(json.dumps({"tool": "nvidia-modelopt", "version": modelopt.__version__, "method": args.method,
                      "high_precision": args.high_precision, "exclude": args.exclude, "op_types": args.op_types,
                      "calibration_images": int(data.shape[0]), "seconds": round(seconds, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
