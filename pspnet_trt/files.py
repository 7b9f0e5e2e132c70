"""Atomic writes, content hashes, output checks and locks: no artifact is ever half-written, and no command
writes over one of its own inputs.

* :func:`atomic_path` / :func:`atomic_open` / :func:`atomic_dir`: stage beside the target as
  ``.NAME.<12 hex>.part``, rename into place on success. A process killed mid-write can leave such a staging
  file (never a half-written target): :func:`remove_stale_staging` clears them where the caller knows no writer
  is alive (it holds the folder's lock).
* :func:`check_outputs`: an output that is one of the command's inputs (the same path, a symlink or a hard
  link to it, or an input inside an output folder that is replaced whole) is refused in one line.
* :func:`exclusive_lock`: an ``flock`` on a lock file, released when the holder exits or dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, List, Optional, Union

from .errors import UserError

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    An exception or Ctrl-C inside the block removes the temporary file and leaves ``path`` as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _new_temporary(path)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """Yield a new empty directory beside ``path``; on success its files are synced and it replaces ``path``
    whole (whatever was there goes: a directory, or a file or link, which is unlinked, not followed), on an
    exception it is removed and ``path`` stays as it was. The swap is two renames: ``path`` is missing only
    between them, and if the second fails the old one is put back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.part"
    tmp.mkdir()
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        old = None
        if path.is_symlink() or path.exists():
            old = path.parent / f".{path.name}.{secrets.token_hex(6)}.old"
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                os.replace(old, path)
            raise
        if old is not None:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _new_temporary(path: Path) -> Path:
    """An empty new file beside ``path``, created with mode 0666 minus the umask (0644 under umask 022), as
    ``open()`` would create it: ``tempfile.mkstemp`` makes 0600 files, and ``os.replace`` keeps that mode."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.part"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"cannot create a temporary file beside {path}")


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """``open`` that writes to a temporary file and renames it into place on success."""
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def write_json(path: PathLike, data: Any) -> None:
    with atomic_open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_json(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


# -- staging files left by a killed writer ---------------------------------------------------------

STAGING = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{12}\.(?:part|old)")  # what atomic_path / atomic_dir stage


def stale_staging(folder: PathLike) -> List[Path]:
    """The staging files and folders (``.NAME.<12 hex>.part``, ``.NAME.<12 hex>.old``) in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if STAGING.fullmatch(p.name))


def remove_stale_staging(folder: PathLike, why: str = "") -> List[Path]:
    """Remove :func:`stale_staging` entries of ``folder`` (logged); only call it where no writer can be alive
    (the caller holds the folder's lock). Returns what was removed."""
    removed = stale_staging(folder)
    for p in removed:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        log.info("removed %s, left by an interrupted write%s", p, f" ({why})" if why else "")
    return removed


# -- outputs that are inputs -----------------------------------------------------------------------

def same_file(a: PathLike, b: PathLike) -> bool:
    """``a`` and ``b`` name one file: the same path, a symlink to it, or a hard link (same device and inode)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist: compare the paths they resolve to
        return Path(a).resolve() == Path(b).resolve()


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def check_outputs(outputs: Iterable[Optional[PathLike]], inputs: Iterable[Optional[PathLike]],
                  folders: Iterable[Optional[PathLike]] = (), fix: str = "pass another output path") -> None:
    """Refuse (one-line UserError) an output that is one of the inputs: the same path, a symlink or a hard link
    to it; or an input inside one of ``folders``, output folders that are replaced whole. ``None`` entries (an
    option not given) are skipped. Call it before anything is written."""
    ins = [Path(i) for i in inputs if i is not None and str(i)]
    for out in (Path(o) for o in outputs if o is not None and str(o)):
        for i in ins:
            if same_file(out, i):
                same = "" if str(out) == str(i) else f" (the same file as the input {i})"
                raise UserError(f"output {out} is also an input of this command{same}: writing it would replace "
                                f"the input; {fix}")
    for folder in (Path(f) for f in folders if f is not None and str(f)):
        for i in ins:
            if _inside(i, folder):
                raise UserError(f"output folder {folder} holds the input {i}: writing the folder would replace "
                                f"the input; {fix}")


# -- locks -----------------------------------------------------------------------------------------

class Locked(UserError):
    """Another live process holds the lock."""


@contextlib.contextmanager
def exclusive_lock(path: PathLike, wait: bool = False, busy: str = "") -> Iterator[Path]:
    """Hold an exclusive ``flock`` on the lock file ``path`` for the block; the file names its holder
    (pid@host) and is removed on release. The kernel releases the lock when its holder exits or is killed, so a
    crash leaves no stale lock. ``wait=False``: a :class:`Locked` error (``busy`` appended) when another process
    holds it; ``wait=True``: block until it is free."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise Locked(f"{path} is held by {holder}, running now{f': {busy}' if busy else ''}") from None
        except BaseException:
            os.close(fd)
            raise
        try:  # the holder before us may have removed the file while we waited: lock the one on disk
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}@{socket.gethostname()}\n".encode())
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # while still held: a waiter then finds the file gone and takes a new one
        os.close(fd)
