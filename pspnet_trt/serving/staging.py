"""Interrupted writes of a Triton model repository, set right: ``pspnet-trt triton`` stages its model dirs beside
the repository (``.REPO.<hex>.triton-staging``, outside the folders Triton reads) and commits them through a
journal; :func:`recover_repository` completes or discards what a kill left, and clears the staging folders earlier
versions left inside the repository. Run by every ``triton`` write and by ``serve`` before the server starts."""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import List, Union

from ..files import STAGING, exclusive_lock, stale_staging

log = logging.getLogger(__name__)

STAGING_SUFFIX = ".triton-staging"
JOURNAL = "commit.json"


def lock_path(out: Path) -> Path:
    return out.parent / f".{out.name}.triton.lock"


def commit(staging: Path, out: Path) -> None:
    """Move every model dir the journal in ``staging`` names into ``out`` (the earlier one, if any, into
    ``staging/old``), then remove ``staging``. Idempotent: a commit interrupted at any point is completed by
    running it again."""
    names = json.loads((staging / JOURNAL).read_text())["models"]
    old = staging / "old"
    old.mkdir(exist_ok=True)
    for name in names:
        new, target = staging / "new" / name, out / name
        if not new.exists():  # already moved in
            continue
        if target.exists() or target.is_symlink():
            if (old / name).exists():
                shutil.rmtree(old / name)
            os.replace(target, old / name)
        os.replace(new, target)
    shutil.rmtree(staging, ignore_errors=True)


def recover_repository(out: Union[str, Path], locked: bool = False) -> None:
    """What an interrupted write of ``out`` left, set right: a staging folder whose journal was written is committed
    (every model of that write goes in), one without a journal is removed (none does); the ``.NAME.<hex>.part`` /
    ``.old`` folders that earlier versions staged inside the repository are removed (an ``.old`` whose model dir is
    missing, a kill between its two renames, is put back). Run by every ``triton`` write and before ``serve``."""
    out = Path(out)
    if not locked:
        if not _left_over(out) and not stale_staging(out):
            return  # nothing to set right: no lock taken (a read-only repository serves as it is)
        with exclusive_lock(lock_path(out), wait=True):
            return recover_repository(out, locked=True)
    for staging in _left_over(out):
        if (staging / JOURNAL).is_file():
            log.info("completing the interrupted write of %s (%s)", out, staging.name)
            commit(staging, out)
        else:
            log.info("removing %s, left by an interrupted write of %s (none of its models went in)", staging, out)
            shutil.rmtree(staging, ignore_errors=True)
    if not out.is_dir():
        return
    for p in sorted(out.iterdir()):
        m = STAGING.fullmatch(p.name)
        if not m or not p.is_dir() or p.is_symlink():
            continue
        target = out / m.group("name")
        if p.name.endswith(".old") and not (target.exists() or target.is_symlink()) and target.name not in (".", ".."):
            log.info("putting back %s as %s (an interrupted replace left it aside)", p, target)
            os.replace(p, target)
        else:
            log.info("removing %s, left by an interrupted write", p)
            shutil.rmtree(p, ignore_errors=True)


def _left_over(out: Path) -> List[Path]:
    """The staging folders of ``out``'s writes (beside it) that a kill left."""
    name = re.compile(rf"\.{re.escape(out.name)}\.[0-9a-f]{{12}}{re.escape(STAGING_SUFFIX)}")
    return sorted(p for p in out.parent.glob(f".{glob.escape(out.name)}.*{STAGING_SUFFIX}") if name.fullmatch(p.name))
