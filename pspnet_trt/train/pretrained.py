"""ImageNet-pretrained backbones, as sssegmentation initialises them (``--pretrained auto|none|PATH|URL``).

Every sssegmentation PSPNet config builds its backbone with ``pretrained=True``: the OpenMMLab "v1c"
deep-stem ResNets (``DEFAULT_MODEL_URLS['resnetXXconv3x3stem']`` in
``ssseg/modules/models/backbones/resnet.py``), mmclassification's MobileNetV2; their URLs are in the backbone
table (``pspnet_trt/models/backbones.py``). The files hold the backbone's keys, bare (``stem.0.weight``,
``layer1.0.conv1.weight``, ...) or under ``backbone.`` (mmclassification) or ``backbone_net.``, plus the ImageNet
classifier (``fc.*``; ``head.*`` and MobileNetV2's last ``conv2.*``: the entry's ``pretrained_extra``), either
bare or under a ``state_dict`` / ``model`` key. sssegmentation strips ``backbone.`` and loads them with
``strict=False``; we load strictly: every backbone tensor must be present with its shape, the classifier is the
only leftover allowed, and anything else is named in the error. (BatchNorm's ``num_batches_tracked`` step
counters, which some exports drop, are the one exception: they keep 0.)

Downloads go through :func:`pspnet_trt.checkpoints.download` (resumable, atomic, progress bar) into
``cache_dir()/pretrained``.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Mapping, Optional, Sequence, Tuple

from ..checkpoints import DownloadError, cache_dir, download, extract_state_dict
from ..errors import UserError
from ..files import sha256_file

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

PREFIXES = ("backbone_net.", "backbone.")
LEFTOVER_ALLOWED: Tuple[str, ...] = ("fc.",)  # a backbone table entry's pretrained_extra says its own


class PretrainedError(UserError):
    """A pretrained backbone that cannot be fetched or does not fit; the message names the fix."""


@dataclass(frozen=True)
class Pretrained:
    """Where the backbone weights came from (recorded in train.log and summary.json)."""

    source: str  # what --pretrained said ("auto", a URL or a path)
    file: str
    sha256: str
    tensors: int

    def to_dict(self) -> Dict[str, object]:
        return {"source": self.source, "file": self.file, "sha256": self.sha256, "tensors": self.tensors}


def is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def resolve(choice: str, backbone: str, progress: bool = True) -> Optional[Path]:
    """The local file for ``--pretrained choice`` (downloading it once), or None for ``none``. ``auto`` is the
    ImageNet URL of ``backbone``'s entry in the backbone table (:data:`pspnet_trt.models.BACKBONES`)."""
    from ..models.backbones import get_backbone

    if choice == "none":
        return None
    if choice == "auto":
        url = get_backbone(backbone).pretrained_url
        if url is None:
            raise PretrainedError(f"--pretrained auto: no ImageNet weights are published for {backbone}; "
                                  "use --pretrained none or --pretrained PATH")
        choice = url
    if is_url(choice):
        dest = cache_dir() / "pretrained" / Path(choice.split("?")[0]).name
        if dest.is_file():
            return dest
        log.info("downloading the pretrained backbone %s -> %s", choice, dest)
        try:
            return download(choice, dest, progress=progress,
                            hint="Train from scratch with --pretrained none, or download the file elsewhere and pass "
                                 f"--pretrained PATH (or copy it to {dest}).")
        except DownloadError as e:
            raise PretrainedError(f"cannot download the pretrained backbone: {e}") from None
    path = Path(choice).expanduser()
    if not path.is_file():
        raise PretrainedError(f"--pretrained {choice}: no such file; pass auto, none, a URL or the path of a .pth file")
    return path


def read_backbone_state(path: Path) -> Dict[str, torch.Tensor]:
    """The backbone tensors in ``path`` (``weights_only=True``), keys without a ``backbone_net.``/``backbone.``
    prefix."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise PretrainedError(f"{path}: refused to load: not a plain tensor checkpoint ({str(e).splitlines()[0]}); "
                              "pass a state-dict file with --pretrained PATH") from None
    except (EOFError, zipfile.BadZipFile, RuntimeError, ValueError, OSError) as e:
        raise PretrainedError(f"{path}: not a readable PyTorch file (truncated download?): {type(e).__name__}: {e}. "
                              "Delete it and try again, or pass --pretrained none") from None
    state = extract_state_dict(ckpt, source=str(path))
    return {_strip(k): v for k, v in state.items()}


def _strip(key: str) -> str:
    for prefix in PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def load_backbone(backbone: nn.Module, path: Path, source: str, extra: Sequence[str] = LEFTOVER_ALLOWED) -> Pretrained:
    """Load ``path`` into ``backbone`` strictly (see the module docstring); returns its record. ``extra``: the key
    prefixes the file may hold beyond the backbone (its table entry's ``pretrained_extra``)."""
    state = read_backbone_state(path)
    extra = tuple(extra)
    expected = backbone.state_dict()
    counters = {k for k in expected if k.endswith("num_batches_tracked")}
    missing = [k for k in expected if k not in state and k not in counters]
    unexpected = [k for k in state if k not in expected and not k.startswith(extra)]
    wrong = [f"{k} {tuple(state[k].shape)} in the file, {tuple(expected[k].shape)} in the model"
             for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} backbone keys missing, e.g. {missing[:5]}")
    if unexpected:
        allowed = " nor ".join(f"{p}*" for p in extra)
        problems.append(f"{len(unexpected)} keys that are neither backbone nor {allowed}, e.g. {unexpected[:5]}")
    if wrong:
        problems.append(f"{len(wrong)} shapes differ, first: {wrong[0]}")
    if problems:
        raise PretrainedError(f"--pretrained {source}: {path} does not fit this {type(backbone).__name__} backbone: "
                              + "; ".join(problems) + ". Pass the ImageNet file of the model's backbone (--pretrained "
                              "auto: the one its backbone table entry names), or --pretrained none")
    load = {k: v for k, v in state.items() if k in expected}
    for k in counters - set(load):
        load[k] = expected[k]
    backbone.load_state_dict(load, strict=True)
    record = Pretrained(source=source, file=str(path), sha256=sha256_file(path), tensors=len(load))
    log.info("backbone initialised from %s (sha256 %s, %d tensors; left out: %s)", path, record.sha256, len(load),
             ", ".join(sorted({k.split(".")[0] + ".*" for k in state if k not in expected})) or "nothing")
    return record


def describe(record: Optional[Mapping[str, object]]) -> str:
    """One line for the console: which backbone initialisation a run used."""
    if not record:
        return "backbone initialisation: random (from scratch, --pretrained none)"
    if "sha256" not in record:
        return f"backbone initialisation: {record['file']} ({record['source']})"
    return f"backbone initialisation: {record['file']} (sha256 {record['sha256']})"
