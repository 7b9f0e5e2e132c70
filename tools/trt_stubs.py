"""Prepare NVIDIA's tensorrt-stubs so that mypy really checks our TensorRT code.

As installed, the stubs are silently ignored (no py.typed; with --ignore-missing-imports mypy
treats `tensorrt` as Any) and do not even parse. This script (idempotent, offline after the first
download) fetches tensorrt-stubs==10.13.0.35.1 without its `tensorrt` dependency, copies the two
stub packages into OUT, and patches them:
  * parameters named `in` (a keyword) -> `in_`,
  * `channel_axis: int` after defaulted parameters -> `channel_axis: int = ...`,
  * drops `import tensorrt_libs` (a runtime-only package).
Then run mypy with MYPYPATH=OUT (see `make typecheck`; pyproject.toml sets ignore_errors for the
stubs' own hundreds of errors).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

VERSION = "10.13.0.35.1"
PACKAGES = ("tensorrt", "tensorrt_bindings")


def patch(text: str) -> str:
    text = re.sub(r"\bin: ", "in_: ", text)
    text = re.sub(r"channel_axis: int\)", "channel_axis: int = ...)", text)
    text = re.sub(r"^import tensorrt_libs.*$", "", text, flags=re.M)
    text = re.sub(r"^from tensorrt_libs .*$", "", text, flags=re.M)
    return text


def prepare(out: Path) -> Path:
    stamp = out / f".tensorrt-stubs-{VERSION}"
    if stamp.is_file():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"tensorrt-stubs=={VERSION}",
                        "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("tensorrt_stubs-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            z.extractall(Path(tmp) / "x")
        staging = Path(tmp) / "out"
        for pkg in PACKAGES:
            for src in (Path(tmp) / "x" / pkg).rglob("*.pyi"):
                dst = staging / src.relative_to(Path(tmp) / "x")
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_text(patch(src.read_text()))
        out.mkdir(parents=True, exist_ok=True)
        for pkg in PACKAGES:
            shutil.rmtree(out / pkg, ignore_errors=True)
            shutil.move(str(staging / pkg), str(out / pkg))
    stamp.write_text(VERSION + "\n")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=".cache/trt-stubs")
    print(prepare(Path(ap.parse_args().out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
