"""Calibration image lists: deterministic, class-balanced as far as cheap, from the TRAINING split.

A common tool calibrates on the val images it then reports mIoU on; we refuse the evaluation split
unless forced. The list is a reviewable text file in ``calibration/``: a header of ``#`` lines
(how it was made, the deploy input size if one was given) and one image path per line, relative
to the dataset root, which is given when the list is read (``--data``): nothing in the file
belongs to the machine that wrote it. Images are preprocessed at quantize time from the ONNX's own metadata
(size, mean/std, colour order), exactly as the runtime does; a list made for another input size
is refused there.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np

from ..calibration import CalibrationList  # noqa: F401  (re-exported: the list format lives in core)
from ..data import DatasetError, SegDataset, dataset_for_spec, default_split
from ..data.datasets import read_dataset_image
from ..errors import UserError
from ..files import atomic_open, check_outputs
from ..zoo import get_spec

log = logging.getLogger(__name__)
CALIBRATION_DIR = Path("calibration")


def select_balanced(dataset: SegDataset, n: int, seed: int, num_classes: int) -> List[int]:
    """Greedy pick of ``n`` images that covers rare classes first; ties broken by a seeded shuffle.

    Reads only the label maps (small PNGs). Each step takes the image with the most
    not-yet-covered pixels of classes weighted by 1 / their frequency in the split.
    """
    if n > len(dataset):
        raise UserError(f"asked for {n} calibration images but the split has only {len(dataset)}")
    from tqdm import tqdm

    hist = np.zeros((len(dataset), num_classes), np.float64)
    for i in tqdm(range(len(dataset)), desc="calibrate: label maps", unit="img", leave=False):
        label = dataset.read_label(i)
        counts = np.bincount(label.ravel(), minlength=256)[:num_classes]
        hist[i] = counts / max(counts.sum(), 1)
    weight = 1.0 / np.maximum(hist.sum(0), 1e-6)
    order = np.random.default_rng(seed).permutation(len(dataset))
    covered = np.zeros(num_classes)
    chosen: List[int] = []
    for _ in range(n):
        gain = (np.maximum(hist[order] - covered, 0) * weight).sum(1)
        gain[np.isin(order, chosen)] = -1
        best = int(order[int(np.argmax(gain))])
        chosen.append(best)
        covered = np.maximum(covered, hist[best] * 0.5)  # diminishing returns, not exclusion
    return chosen


def check_images(dataset: SegDataset, indices: List[int]) -> None:
    """Decode every image the list will name (``quantize`` reads them later): a corrupt or truncated one is named
    here, in one line, not minutes into quantization."""
    from tqdm import tqdm

    for i in tqdm(indices, desc="calibrate: images", unit="img", leave=False):
        path = dataset.items[i][0]
        try:
            read_dataset_image(path)
        except OSError as e:
            raise DatasetError(f"{e} (listed in {dataset.kind} split {dataset.split!r} under {dataset.root}): "
                               "replace or remove it") from None


def make_calibration_list(model: str, data: Union[str, Path], split: str = "train", num_images: int = 64,
                          seed: int = 0, out: Optional[Union[str, Path]] = None, force: bool = False,
                          input_size: Optional[Tuple[int, int]] = None, overwrite: bool = False) -> Path:
    """Select, then write ``calibration/<model>_<split>_n<N>_s<seed>.txt`` (or ``out``); returns its path.

    ``input_size`` (H, W): the deploy size the list is for; recorded, and checked when quantizing. A list
    already at ``out`` (e.g. one committed to ``calibration/``) is left untouched when the new one says the
    same, and is replaced by a different one only with ``overwrite``: otherwise a one-line UserError."""
    spec = get_spec(model)
    if split == default_split(spec, data) and not force:
        raise UserError(f"refusing to calibrate on {split!r}, the split {model} is evaluated on: its mIoU would be "
                        "optimistic. Use the training split (--split train), or --force if you really mean it")
    dataset = dataset_for_spec(spec, data, split)
    chosen = select_balanced(dataset, num_images, seed, dataset.num_classes)
    check_images(dataset, chosen)
    root = Path(os.path.abspath(data))  # not resolve(): split folders may be symlinks to another disk
    out = Path(out) if out else CALIBRATION_DIR / f"{model}_{split}_n{num_images}_s{seed}.txt"
    lines = [f"# pspnet-trt calibration list: {model}, split {split}, {num_images} images, seed {seed}",
             "# selection: greedy class-balanced (rare classes first), training split only",
             "# paths: relative to the dataset root (pass it with --data)"]
    if input_size:
        lines.append(f"# input-size: {input_size[0]}x{input_size[1]}")
    for i in chosen:
        image = Path(os.path.abspath(dataset.items[i][0]))
        lines.append(str(image.relative_to(root) if root in image.parents else image))  # outside the root: absolute
    text = "".join(f"{line}\n" for line in lines)
    check_outputs([out], [p for item in dataset.items for p in item[:2]], fix="pass another --out")  # --overwrite too
    if out.is_file():
        if out.read_text() == text:
            log.info("%s is up to date (the same %d images): left as it is", out, len(chosen))
            return out
        if not overwrite:
            raise UserError(f"{out} exists with another list (a committed one?): pass --overwrite to replace it, or "
                            "--out for a new file")
    with atomic_open(out, "w") as f:
        f.write(text)
    log.info("wrote %s (%d images)", out, len(chosen))
    return out

