"""The base install runs an ONNX file without torch (issue: lean runtime for edge devices).

Builds a fresh virtual environment, installs the project without extras plus onnxruntime (from
the machine's package cache / index; nothing else from the network), checks that torch is absent
there, and compares its labels on a CamVid image with the full install's PyTorch backend.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

LEAN_SCRIPT = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    import pspnet_trt
    from pspnet_trt import Segmenter
    t_import = time.perf_counter() - t0
    try:
        import torch  # noqa: F401
        has_torch = True
    except ImportError:
        has_torch = False
    import cv2, numpy as np
    seg = Segmenter.open(sys.argv[1])
    labels = seg.predict(cv2.imread(sys.argv[2]))
    t_first = time.perf_counter() - t0
    np.save(sys.argv[3], labels)
    try:
        pspnet_trt.build_model("r18_os8_camvid")
        missing_msg = ""
    except Exception as e:
        missing_msg = f"{type(e).__name__}: {e}"
    print(json.dumps({"has_torch": has_torch, "import_s": t_import, "first_prediction_s": t_first,
                      "missing_msg": missing_msg, "repr": repr(seg)}))
""")


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{cmd} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r


def du_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


@pytest.mark.slow
def test_lean_env_runs_onnx_without_torch(tmp_path, camvid_root):
    import cv2

    from pspnet_trt.deploy import DeployInfo
    from pspnet_trt.export import export_onnx
    from pspnet_trt.models import build_model, randomize_
    from pspnet_trt.runtime import Segmenter
    from pspnet_trt.runtime.torch_backend import TorchBackend
    from pspnet_trt.zoo import get_spec

    image_path = sorted((camvid_root / "test").glob("*.png"))[0]
    spec = get_spec("r18_os8_camvid")
    model = randomize_(build_model(spec.name), 7)
    onnx_path = export_onnx(model, DeployInfo.from_spec(spec, output="labels"), tmp_path / "r18.onnx")
    ref = Segmenter(TorchBackend(model, DeployInfo.from_spec(spec, output="logits"))).predict(cv2.imread(str(image_path)))

    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(REPO)])
    venv = tmp_path / "lean"
    run([sys.executable, "-m", "venv", str(venv)])
    py = venv / "bin" / "python"
    wheel = next(wheels.glob("pspnet_trt-*.whl"))
    run([str(py), "-m", "pip", "install", "-q", f"{wheel}[ort]"])
    freeze = run([str(py), "-m", "pip", "freeze"]).stdout.lower()
    assert "torch" not in freeze and "tensorrt" not in freeze and "onnxruntime" in freeze

    script = tmp_path / "lean.py"
    script.write_text(LEAN_SCRIPT)
    out = json.loads(run([str(py), str(script), str(onnx_path), str(image_path), str(tmp_path / "lean.npy")],
                         cwd=tmp_path).stdout.strip().splitlines()[-1])
    assert out["has_torch"] is False
    assert "pip install '.[train]' in the pspnet-trt checkout" in out["missing_msg"]  # one clear line, no ImportError traceback
    cli = venv / "bin" / "pspnet-trt"
    assert "export" in run([str(cli), "--help"]).stdout  # every subcommand registers without torch
    r = subprocess.run([str(cli), "export", "--model", "r18_os8_camvid", "--out", str(tmp_path / "x.onnx")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "torch is needed" in r.stderr and "pip install '.[train]'" in r.stderr
    lean = np.load(tmp_path / "lean.npy")
    assert lean.shape == ref.shape == (360, 480)
    agreement = float((lean == ref).mean())
    assert agreement >= 0.999, agreement
    print(f"lean env {du_mb(venv):.0f} MB, full env {du_mb(Path(sys.prefix)):.0f} MB, import {out['import_s']:.2f} s, "
          f"first prediction {out['first_prediction_s']:.2f} s, agreement {100 * agreement:.3f} %")
