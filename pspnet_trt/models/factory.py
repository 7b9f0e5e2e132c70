"""The model door: :func:`create_model` builds a zoo model and gives it its weights (or refuses).

Export, the runtime's PyTorch backend, validation's reference and training all come through here, so the
weights policy lives in one place: an explicit checkpoint, else the checkpoint this repository ships for the
entry, else the published one (downloaded once); random weights only when asked for (``random_weights=True``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from .init import randomize_
from .pspnet import PSPNet

if TYPE_CHECKING:
    from ..zoo import DatasetInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Weights:
    """Where a model's weights came from (``model.weights``). ``sha256`` is None exactly for random weights."""

    path: Optional[Path] = None
    sha256: Optional[str] = None
    seed: Optional[int] = None  # random weights: the seed of :func:`randomize_` (None: torch's initialisation)
    # The classes the checkpoint records (data set name, class names, palette; None: it records none, or its
    # classifier was left out by a fine-tuning start): what artifacts of this model name and colour.
    classes: Optional[DatasetInfo] = None

    @property
    def random(self) -> bool:
        return self.sha256 is None


def build_model(name: str, num_classes: Optional[int] = None, ppm_channels: Optional[int] = None,
                aux_channels: Optional[int] = None) -> PSPNet:
    """The eval-mode architecture of zoo entry ``name`` with torch's initial weights and nothing loaded.

    For a model to run, use :func:`create_model`. ``num_classes``/``ppm_channels``/``aux_channels`` override
    the entry's (fine-tuning on another dataset, narrow test models).
    """
    from ..zoo import get_spec

    spec = get_spec(name)
    model = PSPNet(
        num_classes=num_classes or spec.num_classes,
        backbone=spec.backbone,
        output_stride=spec.output_stride,
        ppm_channels=ppm_channels or spec.ppm_channels,
        aux_channels=aux_channels or spec.aux_channels,
        dropout=spec.dropout,
        pool_scales=spec.pool_scales,
    )
    return model.eval()


def create_model(name: str, checkpoint: Optional[Union[str, Path]] = None, *, random_weights: bool = False,
                 seed: Optional[int] = 0, num_classes: Optional[int] = None, ppm_channels: Optional[int] = None,
                 aux_channels: Optional[int] = None, progress: bool = True, new_classifier: bool = False) -> PSPNet:
    """Eval-mode PSPNet of zoo entry ``name`` with its weights; ``model.weights`` (:class:`Weights`) says which.

    Weights: ``checkpoint`` (loaded strictly) when given; else the checkpoint the repository ships for the entry
    (``samples/``); else the published one, downloaded once (offline: a one-line UserError, CLI exit 2). Random
    weights only with ``random_weights=True``: ``seed`` N gives :func:`randomize_`'s weights with random BatchNorm
    statistics (parity tests mean something on them), ``seed=None`` torch's initialisation (what training starts
    from). Overrides as in :func:`build_model`.

    A checkpoint that records its classes (``pspnet-trt train`` writes them) sets the class count when
    ``num_classes`` is not given, and ``model.weights.classes`` says what they are. ``new_classifier`` (train
    ``--load-from``): a checkpoint of another class count loads all but its classifier layers (see
    :func:`pspnet_trt.checkpoints.load_state`).
    """
    from ..checkpoints import load_state, read_checkpoint, resolve_checkpoint, resolve_latest_link
    from ..files import sha256_file

    path = resolve_checkpoint(name, checkpoint, random_weights=random_weights, progress=progress)
    if path is None:
        model = build_model(name, num_classes=num_classes, ppm_channels=ppm_channels, aux_channels=aux_channels)
        if seed is not None:
            randomize_(model, seed)
        log.info("%s: random weights (%s), as asked", name, "torch's initialisation" if seed is None else f"seed {seed}")
        model.weights = Weights(seed=seed)
        return model
    path = resolve_latest_link(path)
    state, classes = read_checkpoint(path)
    if num_classes is None and classes is not None:
        num_classes = classes.num_classes
    model = build_model(name, num_classes=num_classes, ppm_channels=ppm_channels, aux_channels=aux_channels)
    skipped = load_state(model, state, str(path), new_classifier=new_classifier)
    if skipped or (classes is not None and classes.num_classes != model.num_classes):
        classes = None  # its classifier was not loaded: the recorded names are not this model's
    model.weights = Weights(path=path, sha256=sha256_file(path), classes=classes)
    return model
