"""The ``tritonserver`` bundled in the nvidia-pytriton wheel, started directly on 127.0.0.1.

The wheel ships Triton 2.x with the Python backend and its stub for each Python 3.8-3.13, but no
TensorRT or ONNX Runtime backend, so here it serves ``--backend python`` models (on the CPU). Three
things it needs that the wheel does not arrange when the binary is started by hand:

* a backend directory whose ``python/`` holds the backend and the stub built for the running Python;
* ``LD_LIBRARY_PATH`` with the wheel's ``nvidia_pytriton.libs`` (the stub links ``libcudart`` from there);
* this interpreter's ``bin`` first on ``PATH``: the stub takes its Python environment from the
  ``python3`` it finds there, and the model needs pspnet_trt, numpy, OpenCV and onnxruntime.

The server runs in its own process group (its stubs with it), so :meth:`TritonServer.stop` can end
all of them, and a failed start leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from ..errors import UserError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
# What the main README's Install table says (in a pspnet-trt checkout) for the Triton client and the bundled
# server; the model dirs' READMEs repeat it (tests/test_serving_safety.py checks that the two agree)
SERVE_INSTALL = ("pip install '.[serve]'", "pip install --no-deps nvidia-pytriton==0.7.0")
ORT_INSTALL = "pip install '.[ort]'"
INSTALL_HINT = (f"{SERVE_INSTALL[1]} (--no-deps: its metadata pins numpy<2, but only its bundled server binary is "
                "used)")
_CONFIG_FIELD = re.compile(r'^(platform|backend)\s*:\s*"([^"]*)"', re.M)


class ServerError(UserError):
    """The server did not start or a model did not load; the message carries the server log's reason."""


@dataclass(frozen=True)
class BundledServer:
    binary: Path
    python_backend: Path  # libtriton_python.so + triton_python_backend_utils.py
    stub: Path  # triton_python_backend_stub for this Python
    libs: Optional[Path]  # nvidia_pytriton.libs


def find_bundled_server() -> BundledServer:
    """Locate tritonserver in the installed nvidia-pytriton wheel without importing pytriton."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError(f"the Triton server is not installed (it comes with the nvidia-pytriton wheel): {INSTALL_HINT}")
    root = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    binary = root / "bin" / "tritonserver"
    backend = root / "backends" / "python"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not binary.is_file() or not (backend / "libtriton_python.so").is_file():
        raise ServerError(f"{root}: nvidia-pytriton is installed but has no tritonserver binary or Python backend; "
                          f"reinstall it: {INSTALL_HINT}")
    if not stub.is_file():
        raise ServerError(f"nvidia-pytriton has no Python-backend stub for Python {version} ({stub}); "
                          "use Python 3.8-3.13 or a newer nvidia-pytriton")
    libs = root.parents[1] / "nvidia_pytriton.libs"
    return BundledServer(binary, backend, stub, libs if libs.is_dir() else None)


def check_repository(repository: Union[str, Path]) -> List[Path]:
    """The model dirs of ``repository`` (``*/config.pbtxt``), each one the bundled server can load (a Python-backend
    model); else a UserError in one line naming the model and the command that fixes it. What an interrupted
    `pspnet-trt triton` left is set right first (:func:`~pspnet_trt.serving.repository.recover_repository`); any
    other hidden folder is named (Triton takes every folder of a repository for a model and refuses those names)."""
    from .staging import recover_repository

    repository = Path(repository)
    if not repository.is_dir():
        raise UserError(f"{repository}: no such model repository (write one with `pspnet-trt triton`)")
    recover_repository(repository)
    hidden = sorted(d.name for d in repository.iterdir() if d.name.startswith(".") and d.is_dir())
    if hidden:
        raise UserError(f"{repository} holds the folder {hidden[0]}, which Triton would take for a model and refuse "
                        f"(an unexpected directory name): move it out of the repository")
    models = sorted(d for d in repository.iterdir() if (d / "config.pbtxt").is_file())
    if not models:
        raise UserError(f"{repository} holds no model (no */config.pbtxt); write one with `pspnet-trt triton`")
    for d in models:
        fields = dict(_CONFIG_FIELD.findall((d / "config.pbtxt").read_text(errors="replace")))
        if fields.get("backend") == "python":
            continue
        what = fields.get("platform") or fields.get("backend") or "not a Python-backend model"
        files = sorted(d.glob("*/model.onnx")) + sorted(d.glob("*/model.plan"))
        source = shlex.quote(str(files[-1])) if files else "ARTIFACT"
        raise UserError(f"{d}: {what}, which the bundled server cannot load (it has only the Python "
                        f"backend); write it for the Python backend with `pspnet-trt triton {source} --out "
                        f"{shlex.quote(str(repository))} --name {d.name} --backend python`, or serve {repository} "
                        "with NVIDIA's Triton container")
    return models


def port_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


_LOG_LINE = re.compile(r'^([EW])\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] "?(.*?)"?$')
_IGNORED = ("CudaDriverHelper", "failed to enable peer access", "Unable to allocate pinned system memory",
            "GPU metrics", "cuda", "CUDA")


def failure_reason(log_text: str) -> str:
    """The server log's reason for a failed start, on one line."""
    errors = []
    for line in log_text.splitlines():
        m = _LOG_LINE.match(line.strip())
        if m and m.group(1) == "E" and not any(s in m.group(2) for s in _IGNORED):
            errors.append(m.group(2))
    loads = [e for e in errors if "failed to load" in e]
    for candidates in (loads, [e for e in errors if "ddress already in use" in e or "Failed to" in e], errors):
        if candidates:  # the Python backend appends the stack ("At: file(line): ...") after the message
            return " ".join(candidates[0].replace("\\n", " ").split(" At: ")[0].split())
    tail = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    return tail[-1] if tail else "no output"


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM it when the process that started it dies, even by SIGKILL (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class TritonServer:
    """``tritonserver`` on 127.0.0.1 serving ``repository``; use as a context manager or start()/stop()."""

    def __init__(self, repository: Union[str, Path], http_port: int = 8000, grpc_port: int = 8001,
                 metrics_port: int = 8002, log_file: Optional[Union[str, Path]] = None, exit_timeout_s: int = 10,
                 log_verbose: int = 0) -> None:
        self.repository = Path(repository).resolve()
        self.http_port, self.grpc_port, self.metrics_port = http_port, grpc_port, metrics_port
        self.exit_timeout_s = exit_timeout_s
        self.log_verbose = log_verbose
        self._tmp: Optional[tempfile.TemporaryDirectory] = None
        self.log_file = Path(log_file) if log_file else None
        self.process: Optional[subprocess.Popen] = None

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{HOST}:{self.grpc_port}"

    def _check(self) -> BundledServer:
        check_repository(self.repository)
        ports = {"--http-port": self.http_port, "--grpc-port": self.grpc_port, "--metrics-port": self.metrics_port}
        if len(set(ports.values())) != 3:
            raise UserError(f"the HTTP, gRPC and metrics ports must differ, got {ports}")
        for flag, port in ports.items():
            if not port_free(port):
                raise ServerError(f"port {port} on {HOST} is busy (another server?); pick a free one with {flag}")
        return find_bundled_server()

    def command(self, bundled: BundledServer, backend_dir: Path) -> List[str]:
        return [str(bundled.binary), "--model-repository", str(self.repository), "--backend-directory", str(backend_dir),
                "--http-address", HOST, "--http-port", str(self.http_port),
                "--grpc-address", HOST, "--grpc-port", str(self.grpc_port),
                "--metrics-address", HOST, "--metrics-port", str(self.metrics_port),
                "--exit-timeout-secs", str(self.exit_timeout_s), "--log-verbose", str(self.log_verbose)]

    def start(self, timeout_s: float = 120.0) -> TritonServer:
        """Start and wait until every model is ready; on failure stop everything and raise ServerError."""
        bundled = self._check()
        self._tmp = tempfile.TemporaryDirectory(prefix="pspnet-trt-triton-")
        tmp = Path(self._tmp.name)
        backend_dir = tmp / "backends"
        shutil.copytree(bundled.python_backend, backend_dir / "python",
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(bundled.stub, backend_dir / "python" / "triton_python_backend_stub")
        if self.log_file is None:  # kept after stop, so that the reason of a failure can be read
            fd, name = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
            os.close(fd)
            self.log_file = Path(name)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        package_root = str(Path(__file__).resolve().parents[2])  # model.py imports this pspnet_trt
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        if bundled.libs is not None:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(bundled.libs), env.get("LD_LIBRARY_PATH")) if p)
        cmd = self.command(bundled, backend_dir)
        log.debug("starting %s", " ".join(cmd))
        with open(self.log_file, "wb") as out:
            self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env, start_new_session=True, preexec_fn=_die_with_parent)
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        log.info("Triton %s ready: HTTP %s, gRPC %s", self.repository, self.http_url, self.grpc_url)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"Triton exited (code {self.process.returncode}) before it was ready: "
                                  f"{failure_reason(self.read_log())} (log: {self.log_file})")
            if self.ready():
                return
            time.sleep(0.2)
        raise ServerError(f"Triton was not ready after {timeout_s:.0f} s: {failure_reason(self.read_log())} "
                          f"(log: {self.log_file})")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def read_log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace") if self.log_file else ""
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> Optional[int]:
        """SIGTERM (models unload, stubs end), SIGKILL to the process group after the exit timeout + 5 s."""
        proc, self.process = self.process, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(self.exit_timeout_s + 5)
                except subprocess.TimeoutExpired:
                    log.warning("Triton did not stop in %d s; killing it", self.exit_timeout_s + 5)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
            code = proc.returncode
            with contextlib.suppress(ProcessLookupError, PermissionError):  # stubs left by a crash
                os.killpg(proc.pid, signal.SIGKILL)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        return code

    def __enter__(self) -> TritonServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve_forever(server: TritonServer, timeout_s: float = 120.0) -> int:
    """Start ``server``, print where it listens, block until SIGINT/SIGTERM (or the server dies), stop it."""
    stop: Dict[str, Optional[int]] = {"signal": None}

    def on_signal(signum: int, frame: Any) -> None:
        if stop.get("ready") is None:  # still starting: unwind start(), which stops the server
            raise KeyboardInterrupt
        stop["signal"] = signum

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start(timeout_s)
        stop["ready"] = 1
        print(f"serving {server.repository} on {server.http_url} (HTTP), {server.grpc_url} (gRPC), "
              f"metrics :{server.metrics_port}; log {server.log_file}; Ctrl-C stops", flush=True)
        while stop["signal"] is None and server.alive():
            time.sleep(0.2)
        if stop["signal"] is None:
            raise ServerError(f"Triton exited unexpectedly: {failure_reason(server.read_log())}")
        code = server.stop()
        print(f"stopped (Triton exit code {code})", flush=True)
        return 0
    finally:
        server.stop()
        for s, handler in old.items():
            signal.signal(s, handler)
