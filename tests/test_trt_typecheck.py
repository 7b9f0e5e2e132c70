"""mypy against the patched tensorrt-stubs really checks our TensorRT code (a check that cannot fail is worthless)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STUBS = REPO / ".cache" / "trt-stubs"


@pytest.fixture(scope="module")
def stubs() -> Path:
    r = subprocess.run([sys.executable, str(REPO / "tools" / "trt_stubs.py"), "--out", str(STUBS)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        pytest.skip(f"tensorrt-stubs could not be fetched from the package index: {r.stderr[-300:]}")
    return STUBS


def mypy(stubs: Path, *targets: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MYPYPATH": str(stubs)}
    return subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", *targets], cwd=REPO, env=env,
                          capture_output=True, text=True)


@pytest.mark.slow
def test_our_tensorrt_layer_passes_and_a_misspelt_attribute_fails(stubs, tmp_path):
    ok = mypy(stubs, "pspnet_trt/trt", "pspnet_trt/runtime")
    assert ok.returncode == 0, ok.stdout[-3000:]
    bad = tmp_path / "bad_trt.py"
    bad.write_text(
        "import tensorrt as trt\n"
        "def build(config: trt.IBuilderConfig) -> bytes:\n"
        "    config.set_flag(trt.BuilderFlag.FP17)\n"
        "    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))\n"
        "    return builder.build_serialized_network(builder.create_network(0), config)\n"
    )
    r = mypy(stubs, str(bad))
    assert r.returncode == 1
    assert '"type[BuilderFlag]" has no attribute "FP17"' in r.stdout
    assert "Incompatible return value type" in r.stdout and "IHostMemory" in r.stdout
