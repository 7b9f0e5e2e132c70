"""sssegmentation checkpoints: read, convert, load strictly, save, download.

On-disk format (``ssseg/train.py``): ``{'cur_epoch', 'cur_iter', 'optimizer', 'model'}``; published
files keep only ``{'model'}``; the 2020 code that trained them saved ``{'epoch', 'model',
'optimizer'}`` and called the PPM fuse conv ``ppm_net.fuse_layer``. We accept all of these, plus
``state_dict`` and ``module.``-prefixed keys, and we always load with ``strict=True``:
sssegmentation silently retries with ``strict=False``, which leaves layers randomly initialised.
The one exception is asked for by name (``train --load-from`` onto another class list,
:func:`load_state`'s ``new_classifier``): the classifier layers are left out, and the log says which.

Checkpoints written by ``pspnet-trt train`` also record what the model predicts under the top-level key
``classes`` (:data:`CLASSES_KEY`: the data set's name, class names and palette); sssegmentation reads
``model`` only and ignores it. Export, validate and predict take the class list from there.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import pickle
import shutil
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .errors import UserError
from .files import Locked, PathLike, atomic_path, exclusive_lock, sha256_file
from .zoo import MODEL_BASE_URL_ENV, DatasetInfo

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

# Renames applied to every loaded state dict: (old prefix, new prefix).
KEY_RENAMES = (("ppm_net.fuse_layer.", "ppm_net.bottleneck."),)
CLASSIFIER_KEY = "decoder.1.weight"
# The heads whose last layers map features to classes: what --load-from onto another class list leaves out.
CLASSIFIER_PREFIXES = ("decoder.", "auxiliary_decoder.")
CLASSES_KEY = "classes"


class CheckpointError(UserError):
    """A checkpoint that cannot be used; the message names the file, the problem and the fix."""


def _torch() -> Any:
    from .deps import require

    return require("torch", "reading checkpoints")


def read_state_dict(path: PathLike) -> Dict[str, torch.Tensor]:
    """The model state dict inside an sssegmentation (or compatible) checkpoint file.

    Uses ``torch.load(weights_only=True)``: a file whose pickle would run code is refused.
    """
    return read_checkpoint(path)[0]


def read_checkpoint(path: PathLike) -> Tuple[Dict[str, torch.Tensor], Optional[DatasetInfo]]:
    """The state dict of a checkpoint file (as :func:`read_state_dict`) and the classes it records (None: it
    records none, e.g. a published sssegmentation file)."""
    path = resolve_latest_link(Path(path))
    ckpt = _load_file(path)
    return extract_state_dict(ckpt, source=str(path)), classes_of(ckpt, str(path))


def checkpoint_classes(path: PathLike) -> Optional[DatasetInfo]:
    """The classes a checkpoint file records, read without loading its tensors (memory-mapped); None when it
    records none or cannot be read that way (reading it for the model then names the problem)."""
    torch = _torch()
    path = Path(path)
    try:
        path = resolve_latest_link(path)
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a zip-format torch file, corrupt, missing: the full read says so
        return None
    return classes_of(ckpt, str(path)) if isinstance(ckpt, Mapping) else None


def classes_record(info: DatasetInfo) -> Dict[str, Any]:
    """What a checkpoint stores under :data:`CLASSES_KEY`."""
    return {"dataset": info.name, "class_names": list(info.class_names), "palette": [list(c) for c in info.palette]}


def classes_of(ckpt: Any, source: str = "checkpoint") -> Optional[DatasetInfo]:
    """The :data:`CLASSES_KEY` record of a loaded checkpoint as a DatasetInfo; None without one."""
    record = ckpt.get(CLASSES_KEY) if isinstance(ckpt, Mapping) else None
    if record is None:
        return None
    try:
        names = tuple(str(n) for n in record["class_names"])
        palette = tuple((int(c[0]), int(c[1]), int(c[2])) for c in record["palette"])
        if not names or len(names) != len(palette):
            raise ValueError(f"{len(names)} class names, {len(palette)} colours")
        return DatasetInfo(str(record.get("dataset") or "unknown"), names, palette)
    except (KeyError, TypeError, IndexError, ValueError) as e:
        raise CheckpointError(f"{source}: its {CLASSES_KEY!r} record is unreadable ({type(e).__name__}: {e}); "
                              f"remove that key (the weights are in 'model') or save the checkpoint again") from None


def _load_file(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` with a one-line CheckpointError for every way it can fail."""
    torch = _torch()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist. Pass the path of a .pth file.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = [line for line in str(e).splitlines() if line.strip()]
        reasons = [line for line in detail if "global" in line.lower()]
        if not reasons:  # not a code-carrying pickle, just not a pickle we can read
            raise _corrupt(path, pickle.UnpicklingError(detail[-2] if len(detail) > 1 else str(e))) from None
        reason = reasons[0]
        raise CheckpointError(
            f"{path}: refused to load: the file contains Python objects other than tensors, which could run "
            f"code when unpickled ({reason.strip()}). Only plain state-dict checkpoints are accepted; "
            "re-save it as {'model': model.state_dict()} in a trusted environment."
        ) from None
    except (EOFError, zipfile.BadZipFile, RuntimeError, ValueError, OSError) as e:
        raise _corrupt(path, e) from None
    return ckpt


def _corrupt(path: Path, e: Exception) -> CheckpointError:
    return CheckpointError(
        f"{path}: not a readable PyTorch checkpoint (truncated or corrupt download?): {type(e).__name__}: {e}. "
        "Delete it and download it again, or pass another --checkpoint."
    )


def resolve_latest_link(path: Path) -> Path:
    """Follow sssegmentation's ``checkpoints-epoch-latest.pth`` even when the link is broken.

    ssseg/train.py links to ``<work_dir>/checkpoints-epoch-N.pth`` with a work_dir relative to where
    training ran, so the link target does not resolve from the link's own folder. We try the target
    relative to the current directory, then its file name beside the link.
    """
    if not path.is_symlink() or path.exists():
        return path
    target = Path(os.readlink(path))
    for candidate in (target, path.parent / target.name):
        if candidate.is_file():
            log.info("%s is a broken link to %s; using %s", path, target, candidate)
            return candidate
    raise CheckpointError(f"{path} is a link to {target}, which does not exist (sssegmentation writes that link "
                          f"relative to its training folder): pass the {target.name} file itself with --checkpoint")


def extract_state_dict(ckpt: Any, source: str = "checkpoint") -> Dict[str, torch.Tensor]:
    """``ckpt['model']``, else ``ckpt['state_dict']``, else the dict itself; converted to current names."""
    torch = _torch()
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{source}: expected a dict, found {type(ckpt).__name__}")
    for key in ("model", "state_dict"):
        if key in ckpt and isinstance(ckpt[key], Mapping):
            ckpt = ckpt[key]
            break
    state: Dict[str, torch.Tensor] = {}
    for key, value in ckpt.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor: this is not a model state dict "
                "(expected sssegmentation's {'model': state_dict} layout)"
            )
        state[convert_key(str(key))] = value
    return state


def convert_key(key: str) -> str:
    """Strip a DDP ``module.`` prefix and apply :data:`KEY_RENAMES`."""
    if key.startswith("module."):
        key = key[len("module."):]
    for old, new in KEY_RENAMES:
        if key.startswith(old):
            key = new + key[len(old):]
    return key


def check_compatible(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise a :class:`CheckpointError` describing every difference between ``state`` and ``model``."""
    expected = model.state_dict()
    problems: List[str] = []
    if CLASSIFIER_KEY in state and CLASSIFIER_KEY in expected:
        got, want = state[CLASSIFIER_KEY].shape[0], expected[CLASSIFIER_KEY].shape[0]
        if got != want:
            problems.append(
                f"it has {got} classes but the model has {want}: build the model with num_classes={got} "
                f"(CLI: --num-classes {got}) or pick the zoo entry of that dataset"
            )
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        problems.append(f"{len(missing)} missing keys, e.g. {missing[:5]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys, e.g. {unexpected[:5]}")
    for key, value in state.items():
        if key in expected and tuple(value.shape) != tuple(expected[key].shape):
            problems.append(
                f"first shape mismatch: {key} is {tuple(value.shape)} in the file, {tuple(expected[key].shape)} in the model "
                "(wrong depth or head width? check the zoo name)"
            )
            break
    if problems:
        raise CheckpointError(f"{source} does not fit this model: " + "; ".join(problems))


def load_checkpoint(model: nn.Module, path: PathLike) -> nn.Module:
    """Load an sssegmentation checkpoint into ``model`` strictly; returns ``model``."""
    load_state(model, read_state_dict(path), str(path))
    return model


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str,
               new_classifier: bool = False) -> List[str]:
    """Load ``state`` into ``model`` strictly; returns the keys left out (none unless ``new_classifier``).

    ``new_classifier`` (fine-tuning onto another class list): when the checkpoint's class count differs from the
    model's, the classifier layers (keys under :data:`CLASSIFIER_PREFIXES` whose shapes differ: the last conv of
    the main and the auxiliary head, whatever the backbone) keep the model's initial weights, and one log line
    names them; everything else still loads strictly."""
    expected = model.state_dict()
    skipped: List[str] = []
    theirs = int(state[CLASSIFIER_KEY].shape[0]) if CLASSIFIER_KEY in state else 0
    if (new_classifier and CLASSIFIER_KEY in state and CLASSIFIER_KEY in expected
            and state[CLASSIFIER_KEY].shape[0] != expected[CLASSIFIER_KEY].shape[0]):
        skipped = [k for k, v in state.items() if k.startswith(CLASSIFIER_PREFIXES) and k in expected
                   and tuple(v.shape) != tuple(expected[k].shape)]
        state = {**{k: v for k, v in state.items() if k not in skipped}, **{k: expected[k] for k in skipped}}
    check_compatible(model, state, source=source)
    model.load_state_dict(state, strict=True)
    if skipped:
        log.info("loaded %s except its classifier layers (%d classes there, %d here); left at their initial "
                 "weights: %s", source, theirs, expected[CLASSIFIER_KEY].shape[0], ", ".join(skipped))
    else:
        log.info("loaded %d tensors from %s", len(state), source)
    return skipped


def save_checkpoint(path: PathLike, model_state: Mapping[str, Any], **extra: Any) -> Path:
    """Write ``{'model': state, **extra}`` atomically, in sssegmentation's format."""
    torch = _torch()
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({**extra, "model": dict(model_state)}, tmp)
    return path


# ---------------------------------------------------------------------------------------------
# Download
# ---------------------------------------------------------------------------------------------


class DownloadError(UserError):
    """A checkpoint could not be downloaded; the message says how to proceed offline."""


def cache_dir() -> Path:
    """``$PSPNET_TRT_CACHE``, else ``~/.cache/pspnet_trt``."""
    return Path(os.environ.get("PSPNET_TRT_CACHE") or Path.home() / ".cache" / "pspnet_trt")


def download(url: Union[str, Sequence[str]], dest: PathLike, sha256: Optional[str] = None, progress: bool = True,
             timeout: float = 30.0, retries: int = 2, hint: Optional[str] = None) -> Path:
    """Download ``url`` to ``dest``: resumable ``.part`` file per URL, optional sha256, atomic rename.

    ``url`` is one URL or several tried in order (the first a server holds is fetched; the log
    says which). An interrupted download keeps its partial file (:func:`part_path`: one per URL)
    and resumes with an HTTP Range request to the same URL, never to another (two names or mirrors
    need not hold the same bytes); a body shorter than its Content-Length is resumed, never taken as
    complete; a range the server refuses (HTTP 416) restarts from zero. ``dest`` appears only once
    complete and verified (its size against what the server announced, and ``sha256`` where known); then the
    other URLs' partial files are removed. Two processes downloading one URL take turns: each holds a lock on
    that URL's partial file while it writes it (``<part>.lock``, removed after), and the one that waited finds
    ``dest`` complete and fetches nothing. On failure, one line
    names every URL tried and what each answered; ``hint`` says what to do instead (default: fetch
    it elsewhere and pass ``--checkpoint PATH``).
    """
    from tqdm import tqdm

    urls = [url] if isinstance(url, str) else list(url)
    if not urls:
        raise ValueError("download needs at least one URL")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures: List[Tuple[str, str]] = []
    there = dest.stat().st_mtime_ns if dest.is_file() else None
    for candidate in urls:
        part = part_path(dest, candidate)
        with exclusive_lock(_lock_path(part), wait=True):
            if dest.is_file() and dest.stat().st_mtime_ns != there:  # another process completed it meanwhile
                log.info("%s was downloaded meanwhile by another process", dest)
                return dest
            problem = _fetch_one(candidate, part, timeout, retries, progress, tqdm)
            if problem is not None:
                failures.append((candidate, problem))
                continue
            if sha256:
                got = sha256_file(part)
                if got != sha256.lower():
                    part.unlink()
                    raise DownloadError(f"{candidate}: sha256 mismatch (expected {sha256}, got {got}); the partial "
                                        "file was removed")
            os.replace(part, dest)
            log.info("fetched %s -> %s", candidate, dest)
        # partial bodies of the other URLs, and the one shared .part of older versions, are of no use now
        for other in [part_path(dest, u) for u in urls if u != candidate]:
            with contextlib.suppress(Locked), exclusive_lock(_lock_path(other)):  # not one another process writes
                other.unlink(missing_ok=True)
        dest.with_name(dest.name + ".part").unlink(missing_ok=True)
        return dest
    tried = "; ".join(f"{u} ({problem})" for u, problem in failures)
    offline = all(problem.startswith(NO_ANSWER) for _, problem in failures)
    hint = hint or f"Download the file elsewhere and pass it with --checkpoint PATH, or copy it to {dest}."
    raise DownloadError(f"cannot download {dest.name}: tried {tried}. " + ("Are you offline? " if offline else "")
                        + hint)


NO_ANSWER = "no answer"


def part_path(dest: Path, url: str) -> Path:
    """Where the partial download of ``dest`` from ``url`` is kept: ``<dest>.<12 hex of sha256(url)>.part``."""
    return dest.with_name(f"{dest.name}.{hashlib.sha256(url.encode()).hexdigest()[:12]}.part")


def _lock_path(part: Path) -> Path:
    """The lock a process holds while it writes ``part`` (see :func:`pspnet_trt.files.exclusive_lock`)."""
    return part.with_name(part.name + ".lock")


class _Incomplete(Exception):
    """The server sent less than it announced (or answered a range from the wrong byte)."""


def _fetch_one(url: str, part: Path, timeout: float, retries: int, progress: bool, tqdm: Any) -> Optional[str]:
    """Fetch ``url`` into ``part`` with retries: None when complete, else what the server (or network) said."""
    problem = ""
    for attempt in range(retries + 1):
        try:
            _download_part(url, part, timeout, progress, tqdm)
            return None
        except urllib.error.HTTPError as e:
            problem = f"HTTP {e.code} {e.reason}"
            if e.code < 500:  # 404 & co: the file is not there, retrying will not change that
                return problem
        except _Incomplete as e:
            problem = str(e)
        except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as e:
            problem = f"{NO_ANSWER}: {getattr(e, 'reason', None) or e}"
        if attempt < retries:
            # the file name only: the final error names every full URL once
            log.warning("download of %s failed (%s); retry %d of %d", url.rsplit("/", 1)[-1], problem, attempt + 1,
                        retries)
            time.sleep(0.5 * (attempt + 1))
    return problem


def _download_part(url: str, part: Path, timeout: float, progress: bool, tqdm: Any) -> None:
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "pspnet-trt"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the server refused the range (e.g. a stale, longer part file): restart
            log.warning("%s: the server refused the range bytes=%d- (HTTP 416); downloading it again from the start",
                        url, have)
            part.unlink()
            return _download_part(url, part, timeout, progress, tqdm)
        raise
    with response:
        if have and response.status != 206:  # server ignored Range: start over
            have = 0
        if have:
            first = response.headers.get("Content-Range", "").replace("bytes", "").strip().split("-")[0]
            if first.isdigit() and int(first) != have:
                part.unlink()
                raise _Incomplete(f"the server answered the range bytes={have}- from byte {first}")
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None and length.isdigit() else None
        total = expected + have if expected is not None else None
        whole = response.headers.get("Content-Range", "").rsplit("/", 1)[-1]
        if whole.isdigit():  # "bytes 100-199/200": the size of the whole file
            total = int(whole)
        reader = _Progress(response, None)
        with open(part, "ab" if have else "wb") as f, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, desc=part.name[: -len(".part")], disable=not progress
        ) as bar:
            reader.bar = bar
            shutil.copyfileobj(reader, f, 1 << 20)
    if expected is not None and reader.count != expected:  # the part file keeps what came: the retry resumes
        raise _Incomplete(f"the server sent {reader.count} of the {expected} bytes its Content-Length announced")
    size = part.stat().st_size
    if total is not None and size != total:  # the file, not just this response: it must be the whole download
        part.unlink()
        raise _Incomplete(f"the downloaded file holds {size} bytes, the server announced {total}; it was removed")


class _Progress:
    """File-like wrapper that advances a tqdm bar as it is read and counts the bytes."""

    def __init__(self, raw: Any, bar: Any) -> None:
        self.raw, self.bar, self.count = raw, bar, 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.count += len(data)
        self.bar.update(len(data))
        return data


def _offline_hint(files: Sequence[str], fix: str) -> str:
    return (f"Point {MODEL_BASE_URL_ENV} at a mirror of the folder that holds {' or '.join(files)}, or download the "
            f"file elsewhere and {fix}.")


def fetch_checkpoint(name: str, progress: bool = True) -> Path:
    """Path of the published checkpoint of zoo entry ``name``, downloaded into :func:`cache_dir` once.

    Both names sssegmentation has published it under are tried, in the order of ``spec.urls``; the
    cached copy keeps the first name whichever URL served it."""
    from .zoo import get_spec

    spec = get_spec(name)
    if not spec.urls:
        raise DownloadError(
            f"{name} has no published checkpoint: train one (`make demo` or `pspnet-trt train --model {name}`) "
            "and pass it with --checkpoint PATH"
        )
    dest = cache_dir() / spec.checkpoint_files[0]
    if dest.is_file():
        return dest
    log.info("downloading %s -> %s", " or ".join(spec.urls), dest)
    return download(spec.urls, dest, sha256=spec.sha256, progress=progress,
                    hint=_offline_hint(spec.checkpoint_files, f"pass it with --checkpoint PATH (or copy it to {dest})"))


REPOSITORY = Path(__file__).resolve().parent.parent  # the checkout's root, where samples/ is


def shipped_checkpoint(name: str) -> Optional[Path]:
    """The checkpoint this repository ships for zoo entry ``name`` (``spec.shipped_checkpoint``), or None: the
    entry ships none, or the file is not here (an installed package has no ``samples/``)."""
    from .zoo import get_spec

    spec = get_spec(name)
    if not spec.shipped_checkpoint:
        return None
    path = REPOSITORY / spec.shipped_checkpoint
    return path if path.is_file() else None


def resolve_checkpoint(name: str, checkpoint: Optional[PathLike] = None, *, random_weights: bool = False,
                       progress: bool = True) -> Optional[Path]:
    """The checkpoint zoo model ``name`` is built with: ``checkpoint`` when given, else the one this repository
    ships (``samples/``), else the published one (downloaded once into :func:`cache_dir`). None only when
    ``random_weights`` is asked for; nothing falls back to random weights on its own.

    Raises a one-line :class:`~pspnet_trt.errors.UserError` (CLI exit 2) when there is none: an entry without a
    published or shipped checkpoint, or a download that fails (offline)."""
    from .zoo import get_spec

    spec = get_spec(name)
    if random_weights:
        if checkpoint is not None:
            raise UserError(f"--checkpoint {checkpoint} and --random-weights contradict each other: pass one of them")
        return None
    if checkpoint is not None:
        return Path(checkpoint)
    shipped = shipped_checkpoint(name)
    if shipped is not None:
        log.info("%s: the checkpoint shipped in %s", name, shipped)
        return shipped
    if not spec.urls:
        missing = (f" and its shipped one ({spec.shipped_checkpoint}) is not here (an installed package has none)"
                   if spec.shipped_checkpoint else "")
        raise CheckpointError(f"{name} has no published checkpoint{missing}: pass --checkpoint PATH (train one: "
                              f"`pspnet-trt train --model {name}`), or --random-weights for random weights (plumbing "
                              "and speed only)")
    return fetch_checkpoint(name, progress=progress)


def fetch_training_log(name: str, progress: bool = True) -> Path:
    """The published training log of zoo entry ``name`` (both names tried), downloaded into :func:`cache_dir` once."""
    from .zoo import get_spec

    spec = get_spec(name)
    if not spec.log_urls:
        raise DownloadError(f"{name} has no published training log")
    dest = cache_dir() / spec.log_files[0]
    if dest.is_file():
        return dest
    return download(spec.log_urls, dest, progress=progress,
                    hint=_offline_hint(spec.log_files, f"copy it to {dest}"))
