"""The README's "Quick start (CPU)", command by command (every bash block of the section, in order), as written,
on a fresh copy of the repository (its git-tracked files), offline, with this venv's `pspnet-trt` and `python`
on PATH; then the section's Python snippet, as written, on the files those commands made.

What the test does that a newcomer does by hand: it skips the install line (it needs the package index and
minutes; the venv running the test is what `make install` made, and the install lines are checked below), waits
for `serve`'s "serving" line before the next command (the README says to), and stops the server at `kill %1`.
If the default Triton ports are taken on this machine (other test runs), it moves `serve` and the client to free
ports: the one change it makes to a command. Each command's wall time is printed at the end (`pytest -s`).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
VENV_BIN = Path(sys.executable).parent
DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def fenced(text: str, lang: str) -> list:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


QUICKSTART = "Quick start (CPU)"


def quickstart_commands() -> list:
    """The quick start's command lines: continuations joined, comments (after two spaces) dropped."""
    block = "\n".join(fenced(section(QUICKSTART), "bash"))
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        line = re.sub(r"\s{2,}#.*$", "", line).strip()
        if line and not line.startswith("#"):
            commands.append(re.sub(r"\s+", " ", line))
    return commands


def copy_of_the_checkout(dest: Path) -> Path:
    """What a fresh clone holds: the files git tracks (and new, not ignored ones, while they are uncommitted)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports() -> dict:
    if all(free(p) for p in DEFAULT_PORTS.values()):
        return DEFAULT_PORTS
    ports = {}
    for name in DEFAULT_PORTS:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports[name] = s.getsockname()[1]
    return ports


def test_install_lines_work_from_the_checkout():
    """`pip install pspnet-trt` failed (the package is on no index); every install line now installs from the
    checkout, with extras that pyproject.toml defines; `make install` is what the quick start uses."""
    from setuptools.config.pyprojecttoml import read_configuration

    extras = set(read_configuration(ROOT / "pyproject.toml")["project"]["optional-dependencies"])
    text = "\n".join(p.read_text() for p in [README, *sorted((ROOT / "docs").glob("*.md"))])
    lines = re.findall(r"pip install [^`\n|]+", text)
    assert lines
    for line in lines:
        assert not re.search(r"pip install (-e )?'?pspnet-trt", line), line
        for group in re.findall(r"'\.\[([\w,]+)\]'", line):
            assert set(group.split(",")) <= extras, line
    assert "pip install '.[ort]'" in text and "make install" in quickstart_commands()[0]
    make = subprocess.run(["make", "-n", "-B", "-C", str(ROOT), "install"], capture_output=True, text=True,
                          check=True).stdout
    assert "pip install -q -e '.[dev]'" in make and "nvidia-pytriton" in make


def test_pyproject_license_is_not_a_deprecated_table():
    """setuptools printed three "project.license as a TOML table is deprecated" boxes on every install."""
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_configuration(Distribution(), str(ROOT / "pyproject.toml"))
    assert not [str(w.message) for w in caught if "license" in str(w.message).lower()]


def test_first_screen_says_which_command_is_which():
    lines = README.read_text().splitlines()
    assert len(lines) <= 300
    first = "\n".join(lines[:60])
    for what in ("make demo", "make test", "## What is verified where", "not run"):
        assert what in first, what


@pytest.mark.slow
def test_quickstart_runs_as_written_on_a_fresh_copy(tmp_path):
    repo = copy_of_the_checkout(tmp_path / "pspnet-trt")
    tracked = {p for p in repo.rglob("*") if p.is_file()}
    commands = quickstart_commands()
    install, commands = commands[0], commands[1:]
    assert install.startswith("make install")
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(repo),
           # offline: an empty download cache and a mirror that refuses every connection
           "PSPNET_TRT_CACHE": str(tmp_path / "cache"), "PSPNET_TRT_MODEL_BASE_URL": "http://127.0.0.1:9/none"}
    env.pop("CAMVID_ROOT", None)
    ports = free_ports()
    times, server = [], None
    try:
        for command in commands:
            shown = command
            if ports != DEFAULT_PORTS:
                command = command.replace("127.0.0.1:8001", f"127.0.0.1:{ports['grpc']}")
                if command.startswith("pspnet-trt serve"):
                    command = command.replace(" &", f" --http-port {ports['http']} --grpc-port {ports['grpc']} "
                                                    f"--metrics-port {ports['metrics']} &")
            start = time.perf_counter()
            if command.endswith("&"):
                server = start_in_background(command[:-1], repo, env)
            elif command == "kill %1":
                assert server is not None
                stop(server)
                server = None
            else:
                done = subprocess.run(["bash", "-c", command], cwd=repo, env=env, capture_output=True, text=True,
                                      timeout=600)
                assert done.returncode == 0, f"{shown}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
                check_output(command, done.stdout, repo)
            times.append((time.perf_counter() - start, shown))
    finally:
        if server is not None:
            stop(server)
    # the README's Python snippet, as written, on what the commands made
    (snippet,) = fenced(section(QUICKSTART), "python")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", snippet], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    times.append((time.perf_counter() - start, "README Python snippet"))
    assert (repo / "reports" / "quickstart" / "overlay.png").is_file()
    assert "never validated" not in done.stderr and "RANDOM" not in done.stderr  # validated, from a checkpoint
    # everything the quick start wrote is git-ignored: a clone stays clean
    made = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file() and p not in tracked
                  and "__pycache__" not in p.parts)
    assert made
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=ROOT, input="\n".join(made),
                             capture_output=True, text=True).stdout.split()
    assert sorted(ignored) == made, sorted(set(made) - set(ignored))
    print("\nquick start wall times (s):")
    for seconds, command in times:
        print(f"  {seconds:6.1f}  {command[:110]}")


def check_output(command: str, stdout: str, repo: Path) -> None:
    words = shlex.split(command)
    if words[:2] == ["pspnet-trt", "export"]:
        assert (repo / words[words.index("--out") + 1]).is_file()
    elif words[:2] == ["pspnet-trt", "predict"]:
        out = repo / words[words.index("--out") + 1]
        if words[-1].endswith(".mp4"):
            assert (out / f"{Path(words[-1]).stem}_overlay.mp4").stat().st_size > 0
        else:
            pngs = sorted(p.name for p in out.glob("*.png"))
            assert len(pngs) == 3 * len(list((repo / words[-1]).glob("*.jpg"))) and pngs, pngs
    elif words[:2] == ["pspnet-trt", "validate"]:
        from pspnet_trt.records import partial, read_record

        record = read_record(repo / words[words.index("--onnx") + 1])
        assert record["passed"] is True and not partial(record), record
    elif words[:2] == ["pspnet-trt", "info"]:
        assert "validation: PASS" in stdout and "RANDOM" not in stdout, stdout
    elif words[:2] == ["pspnet-trt", "triton"]:
        assert (repo / words[words.index("--out") + 1] / words[words.index("--name") + 1] / "config.pbtxt").is_file()
    elif words[0] == "python":
        assert "(360, 480)" in stdout, stdout


def start_in_background(command: str, repo: Path, env: dict) -> subprocess.Popen:
    """`command &`, then wait for its "serving" line, as the README says."""
    proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=repo, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("serving"):
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 180
    while not ready.is_set() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ready.is_set(), f"{command} did not get ready:\n{''.join(lines)[-3000:]}"
    proc.lines = lines  # type: ignore[attr-defined]
    return proc


def stop(proc: subprocess.Popen) -> None:
    """`kill %1`: SIGTERM to the job; serve stops Triton and exits 0."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert code in (0, -signal.SIGTERM, 128 + signal.SIGTERM), "".join(proc.lines)[-3000:]  # type: ignore[attr-defined]
