"""Shared fixtures. Real CamVid comes from $CAMVID_ROOT (.ci/run sets it); tests that need it skip without it."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path
from typing import Iterator, Tuple

import pytest


@pytest.fixture(scope="session")
def camvid_root() -> Path:
    root = os.environ.get("CAMVID_ROOT")
    if not root or not Path(root).is_dir():
        pytest.skip("CAMVID_ROOT is not set or not a directory (CI sets it to ../shared/data/camvid)")
    return Path(root)


@pytest.fixture(scope="session")
def tiny_model():
    """Narrow R-18 PSPNet (11 classes) with random weights and random BatchNorm statistics (asked for explicitly)."""
    from pspnet_trt.models import create_model

    return create_model("r18_os8_camvid", random_weights=True, seed=0, ppm_channels=16, aux_channels=16)


@pytest.fixture(scope="session")
def tiny_info():
    """DeployInfo of the CamVid demo entry at 64x128, both outputs."""
    from pspnet_trt.deploy import DeployInfo
    from pspnet_trt.zoo import get_spec

    return DeployInfo.from_spec(get_spec("r18_os8_camvid"), input_size=(64, 128), output="both")


@pytest.fixture(scope="session")
def tiny_onnx(tiny_model, tiny_info, tmp_path_factory) -> Path:
    """FP32 ONNX of ``tiny_model`` at 64x128 with logits and labels outputs."""
    from pspnet_trt.export import export_onnx

    return export_onnx(tiny_model, tiny_info, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture()
def www(tmp_path) -> Iterator[Tuple[str, Path]]:
    """A local HTTP server over a fresh folder: (its URL, the folder); downloads are tested against it."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()
